"""Processes a fault case kills: a worker (`python worker.py`) and a Temporal dev server whose
state lives in a SQLite file, so it can be stopped and started again on the same port."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.binaries import find_binary
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings, as_environment

ROOT = Path(__file__).resolve().parents[2]


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """A worker process with every one of the test's settings (`core.settings.as_environment`)."""
    env = {
        **os.environ,
        **as_environment(settings),
        "CAMPAIGNS_LOG_LEVEL": "WARNING",
        "CAMPAIGNS_LOG_FORMAT": "text",
    }
    return subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: nobody reads a pipe here, and a full one would block the worker.
        stderr=log.open("ab"),
    )


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DevServer:
    """`temporal server start-dev` on a fixed port with a persistent `--db-filename`."""

    def __init__(self, db_file: Path, log: Path) -> None:
        self.db_file = db_file
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60) -> None:
        args = [
            find_binary("temporal"),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ]
        for key in SEARCH_ATTRIBUTES:  # registered when the file is new, ignored after
            args += ["--search-attribute", f"{key.name}=Keyword"]
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (starting is quick; the wait below is async)
            args, stdout=subprocess.DEVNULL, stderr=self.log.open("ab")
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            assert self.proc.poll() is None, f"dev server exited: {self.log.read_text()[-2000:]}"
            try:
                await self.connect()  # connecting asks the server for its system info
                return
            except RuntimeError:
                assert loop.time() < deadline, "the dev server never answered"
                await asyncio.sleep(0.3)

    async def connect(self) -> Client:
        return await Client.connect(self.address, data_converter=pydantic_data_converter)

    def stop(self) -> None:
        """SIGTERM and wait: the server shuts down; its state stays in the db file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
