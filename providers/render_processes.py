"""The parent's handles on render processes and the unpickler of their answers: the trust boundary.

The forking server's handle (_Forker), a render process's (_Child), the restricted unpickler
(_Answers) and the check of an answer's type (_checked), kept apart from the pool's queueing
(providers.render_pool) and from the code that runs in the processes (providers.render_child).

Results travel back pickled; the parent unpickles only plain data and the dataclasses of
`providers`, so even a process whose sandbox were broken could not make the parent run code.
"""

import asyncio
import contextlib
import dataclasses
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from providers.email_content import EmailParts
from providers.render_child import CHECK, EMAIL, HEADER, SMS

# Starting a process (a fork of the forkserver; the first one also starts the forkserver).
START_SECONDS = 30.0
# The largest answer a process may send (a wave of emails at their largest parts is well below).
MAX_FRAME_BYTES = 256 * 1024 * 1024
# The module the forking server runs (`python -m`).
FORKER_MODULE = "providers.render_child"


class _Answers(pickle.Unpickler):
    """Unpickles what a render process sends: plain data and dataclasses of `providers` only."""

    def find_class(self, module: str, name: str) -> Any:
        found = getattr(sys.modules.get(module), name, None) if module.startswith("providers.") else None
        if isinstance(found, type) and dataclasses.is_dataclass(found):
            return found
        raise pickle.UnpicklingError(f"a render process may not send {module}.{name}")


class _Forker:
    """The parent's end of the forking server, started on first use; one per process.

    Its calls block (a fork takes milliseconds, the first call waits for the server to import the
    renderer): the pool makes them from a thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def fork(self, memory_mb: int) -> tuple[int, socket.socket]:
        with self._lock:
            try:
                control = self._running()
                control.sendall(HEADER.pack(memory_mb))
                message, fds, _flags, _address = socket.recv_fds(control, HEADER.size, 1)
                if len(message) != HEADER.size or len(fds) != 1:
                    raise ConnectionError("the render process server did not answer")
            except BaseException:
                self._stop()
                raise
            (pid,) = HEADER.unpack(message)
            return pid, socket.socket(fileno=fds[0])

    def _running(self) -> socket.socket:
        if self._server is not None and self._control is not None and self._server.poll() is None:
            return self._control
        self._stop()
        ours, theirs = socket.socketpair()
        root = Path(__file__).resolve().parent.parent
        # An empty environment: a render needs none of the service's settings, nor its secrets.
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
        try:
            self._server = subprocess.Popen(
                [sys.executable, "-m", FORKER_MODULE, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ours.settimeout(START_SECONDS)
        self._control = ours
        return ours

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._server is not None:
            with contextlib.suppress(ProcessLookupError):
                self._server.kill()
            self._server.wait()
            self._server = None


_FORKER = _Forker()


class _Child:
    """One render process and the parent's end of its socket."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.pid = pid
        self.reader = reader
        self.writer = writer
        self.gone = False  # seen dead: its pid may belong to another process by now

    async def send(self, request: tuple[Any, ...]) -> None:
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(HEADER.pack(len(data)) + data)
        await self.writer.drain()

    async def receive(self) -> tuple[Any, ...]:
        try:
            header = await self.reader.readexactly(HEADER.size)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.gone = True
            raise
        (size,) = HEADER.unpack(header)
        if size > MAX_FRAME_BYTES:
            raise ConnectionError(f"a render process sent {size} bytes at once")
        answer = _Answers(io.BytesIO(await self.reader.readexactly(size))).load()
        if not isinstance(answer, tuple) or not answer:
            raise ConnectionError("a render process sent something that is not an answer")
        return answer

    def kill(self) -> None:
        """Kill the process now (the forking server reaps it); a closed socket alone would end
        it only once its render is over."""
        if not self.gone:
            self.gone = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.writer.close()


_ANSWER_TYPES: dict[str, type] = {CHECK: type(None), SMS: str, EMAIL: EmailParts}


def _checked(op: str, value: Any) -> Any:
    """An answer of the expected type, or the process is not trusted any more."""
    expected = _ANSWER_TYPES.get(op)
    if expected is None or not isinstance(value, expected):
        raise ConnectionError(f"a render process answered {type(value).__name__} to {op}")
    return None if op == CHECK else value
