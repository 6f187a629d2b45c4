"""The render processes' side (forking server, render loop, limits, frames): apart, as it runs templates.

This is the only code that runs tenant templates, in processes of their own, and the module the
forking server is started from (`python -m providers.render_child`, by providers.render_processes,
once per API or worker process, with an empty environment). The server imports the renderer once
and is single-threaded, so forking it is safe and takes milliseconds; each render process it forks
lowers its CPU priority (NICENESS), sets its memory limit, then answers the requests of the
parent's pool on its socket, recipient by recipient.

Requests and answers travel as frames (`HEADER`: the length, then a pickle); the parent reads
answers with a restricted unpickler (providers.render_processes).
"""

import io
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import Any

from core.enums import SkipReason
from providers.email_content import render_parts
from providers.rendering import (
    MAX_EMAIL_PART_CHARS,
    RenderTimeLimit,
    TemplateSyntaxProblem,
    check_template,
    render,
)
from providers.sms_encoding import too_many_segments

# Render processes run at a lower CPU priority than the service's own processes: a template that
# burns CPU until a limit stops it takes the machine's spare time, not the event loops' time.
NICENESS = 10
# A frame's length, before its pickle; also a memory limit to the forking server, a pid from it.
HEADER = struct.Struct("!I")

# What a request asks for.
CHECK, EMAIL, SMS = "check", "email", "sms"
# Which limit a render hit (the last field of a "fail" answer).
_TIME, _MEMORY = "time", "memory"


def _forker_main(fd: int) -> None:
    """The forking server: for each request on the control socket `fd` (a memory limit), fork a
    render process and send the parent its pid and its end of a new socket; exit on EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # render processes are reaped by the kernel
    control = socket.socket(fileno=fd)
    while True:
        request = _receive_exactly(control, HEADER.size)
        if request is None:
            return
        (memory_mb,) = HEADER.unpack(request)
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the render process
            code = 1
            try:
                control.close()
                ours.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _child_main(theirs, memory_mb)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        socket.send_fds(control, [HEADER.pack(pid)], [ours.fileno()])
        ours.close()


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _child_main(sock: socket.socket, memory_mb: int) -> None:
    """A render process: answers each request on `sock`, recipient by recipient, until EOF."""
    _limit_memory(memory_mb)
    os.nice(NICENESS)
    with sock, sock.makefile("rwb") as stream:
        _write(stream, ("ready", os.getpid()))
        while True:
            request = _read(stream)
            if request is None:
                return
            op, template, items, slice_seconds, options = request
            started = time.monotonic()
            for index, item in enumerate(items):
                answer = _answer(op, template, item, options, memory_mb)
                _write(stream, answer)
                more = index + 1 < len(items)
                # After a limit, the parent decides about the rest (it may remember the template).
                if more and (answer[4] is not None or time.monotonic() - started > slice_seconds):
                    _write(stream, ("pause",))
                    break


def _limit_memory(memory_mb: int) -> None:
    """RLIMIT_AS at what the process holds now plus `memory_mb`: an allocation past it raises
    MemoryError inside the render instead of taking the machine's memory."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _answer(op: str, template: Any, item: Any, options: Mapping[str, Any], memory_mb: int) -> tuple[Any, ...]:
    """("ok", value) or ("fail", reason, message, field, limit) for one recipient or field."""
    field_name: str | None = "body" if op == SMS else None
    try:
        if op == CHECK:
            source, html = item
            check_template(source, html=html)
            return ("ok", None, None, None, None)
        if op == SMS:
            body = render(template, item)
            too_long = too_many_segments(body, options["max_segments"])
            if too_long is not None:
                return ("fail", SkipReason.TOO_LONG.value, too_long, "body", None)
            return ("ok", body, None, None, None)
        subject, html, text = template
        parts = render_parts(subject, html, text, item)
        for name in ("html", "text"):
            value = getattr(parts, name)
            if value is not None and len(value) > MAX_EMAIL_PART_CHARS:
                message = (
                    f"the rendered {name} has {len(value):,} characters; at most {MAX_EMAIL_PART_CHARS:,}"
                )
                return ("fail", SkipReason.TOO_LONG.value, message, name, None)
        return ("ok", parts, None, None, None)
    except TemplateSyntaxProblem as err:
        limit = _limit_of(err.__cause__)
        message = f"the template needs more than {memory_mb} MB" if limit == _MEMORY else str(err)
        if op == EMAIL and limit is None and options.get("locate"):
            field_name = _failing_part(template, item)
        return ("fail", SkipReason.TEMPLATE_ERROR.value, message, field_name, limit)
    except MemoryError:  # outside the render itself, e.g. while measuring its output
        return ("fail", SkipReason.TEMPLATE_ERROR.value, f"the template needs more than {memory_mb} MB",
                field_name, _MEMORY)  # fmt: skip


def _limit_of(cause: BaseException | None) -> str | None:
    if isinstance(cause, MemoryError):
        return _MEMORY
    if isinstance(cause, RenderTimeLimit):
        return _TIME
    return None


def _failing_part(template: tuple[str | None, str | None, str | None], context: Any) -> str:
    """Which part of an email fails (asked by previews, once rendering the email failed)."""
    for name, source, html in zip(("subject", "html", "text"), template, (False, True, False), strict=True):
        try:
            render(source, context, html=html)
        except TemplateSyntaxProblem:
            return name
    return "html"


def _write(stream: io.BufferedIOBase, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: io.BufferedIOBase) -> Any:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    return pickle.loads(stream.read(size))


if __name__ == "__main__":
    _forker_main(int(sys.argv[1]))
