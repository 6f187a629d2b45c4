"""Child processes owned by the dev stack: one process group each, output logged, stopped as a group.

Each child runs in its own session, so the terminal's Ctrl-C reaches only `campaigns dev`, which
then stops the children in a chosen order. On Linux a child also gets SIGTERM if `campaigns dev`
itself dies without cleaning up (PR_SET_PDEATHSIG), so even `kill -9` leaves no orphans behind.
"""

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
CHUNK = 1 << 16


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A `preexec_fn`: ask the kernel to SIGTERM the child when its parent goes away."""

    def preexec() -> None:
        if not sys.platform.startswith("linux"):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Child:
    """One long-running (or one-shot) program, its output copied to a log file and the terminal."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
        *,
        echo: bool = True,
        stop_signal: signal.Signals = signal.SIGINT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.echo = echo
        self.stop_signal = stop_signal
        self.process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def start(self) -> "Child":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: we signal the whole group
            preexec_fn=_die_with_parent(os.getpid()),
        )
        self._pump = asyncio.create_task(self._copy_output(), name=f"{self.name}-output")
        return self

    async def wait(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        code = await self.process.wait()
        if self._pump is not None:
            await self._pump
        return code

    async def stop(self, grace: float = 10.0) -> None:
        """Signal the process group, wait up to `grace` seconds, then SIGKILL whatever is left of it."""
        if self.process is None:
            return
        pgid = self.process.pid
        if self.process.returncode is None:
            _signal_group(pgid, self.stop_signal)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                print(f"{self.name} did not stop within {grace:.0f}s: killing it", flush=True)
        # Grandchildren (if any) share the group and may outlive the leader.
        _signal_group(pgid, signal.SIGKILL)
        await self.process.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def tail(self, lines: int = 20) -> str:
        """The end of the log, to show why a child failed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def _copy_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        prefix = f"{self.name:<9}| "
        pending = b""
        with self.log_path.open("ab") as log:
            while chunk := await self.process.stdout.read(CHUNK):
                log.write(chunk)
                log.flush()
                if not self.echo:
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                self._echo(prefix, lines)
            if self.echo and pending:
                self._echo(prefix, [pending])

    @staticmethod
    def _echo(prefix: str, lines: list[bytes]) -> None:
        if lines:
            sys.stdout.write("".join(prefix + line.decode(errors="replace") + "\n" for line in lines))
            sys.stdout.flush()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
