"""Runs tenant templates in render processes, fair across tenants: the pool's API, queues, dispatch.

A template is code written by a tenant. The sandbox in providers.rendering bounds what it may build
and counts its steps, but a single built-in can still run for seconds without returning to it
(sorting a long list, one filter over a million characters), and compiling a very large template
holds the interpreter lock however it is scheduled. Run in the API or the worker, either stalls
every other tenant's requests and sends. Here they run in processes of their own:

- each job (a save's check, a preview, or one wave of a send: many recipients of one template)
  runs in one process, which answers recipient by recipient. An answer that takes longer than the
  wall-clock limit gets the process killed; that recipient fails with "took longer than N s" and
  the process is replaced. A process runs under a memory limit (RLIMIT_AS, counted from what it
  holds when it starts): a render over it fails with "needs more than N MB", and the process is
  replaced too;
- a template that hit the time or memory limit is remembered, per tenant, for
  `render_quarantine_seconds`: its further renders fail at once with that reason instead of
  holding a process for seconds per recipient (0 turns this off; the rest of the job is then
  rendered on a fresh process);
- jobs queue per tenant and are dispatched round-robin across tenants; a tenant holds at most
  `processes - 1` processes at once (one when there is a single process), and a job hands its
  process back after SLICE_SECONDS (the rest of it queues again behind the other tenants), so
  another tenant's job waits for at most one recipient's render, never for a whole campaign;
- render processes run at a lower CPU priority (render_child.NICENESS) than the API and the
  worker, so a CPU-hungry template slows its own renders first;
- a single-threaded server process (`python -m providers.render_child`, which holds the processes'
  code; empty environment) forks them: the threaded asyncio parent never forks; its handles on them
  are providers.render_processes. Processes start only when a job needs them. The event loop only
  writes a request and reads answers on a socket: it never waits for a render;
- a plain template (literal text and the recipient's fields, providers.plain_templates) cannot
  loop, call or build anything: it renders in the caller, and only the recipients it cannot write
  exactly as Jinja would go to the processes.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import pickle
import signal
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.enums import SkipReason
from core.settings import Settings
from providers.email_content import EmailParts
from providers.plain_templates import filled, plain_emails, plain_sms
from providers.render_child import CHECK, EMAIL, SMS
from providers.render_processes import _FORKER, START_SECONDS, _checked, _Child
from providers.rendering import TemplateSyntaxProblem
from providers.sms_encoding import too_many_segments

log = logging.getLogger(__name__)

TOO_LONG = SkipReason.TOO_LONG.value

# A job gives its process back after this long (between two recipients), so that the jobs of
# other tenants are not kept waiting behind a long one; a wave of ordinary messages takes a few ms.
SLICE_SECONDS = 0.05


class RenderProblem(TemplateSyntaxProblem):
    """One message (or template field) that could not be rendered: what the ledger records as its
    reason, and which part of the template failed when that is known."""

    def __init__(
        self, message: str, *, reason: str = SkipReason.TEMPLATE_ERROR.value, field: str | None = None
    ):
        super().__init__(message)
        self.reason = reason
        self.field = field


class RenderLimitProblem(RenderProblem):
    """The render ran out of time or memory: its process was replaced, or the template is
    remembered as one that does."""


@dataclass(frozen=True)
class EmailSource:
    """The three sources of an EMAIL template version (the text may derive from the html)."""

    subject: str | None
    html: str | None
    text: str | None


@dataclass(eq=False)
class _Slot:
    number: int
    child: _Child | None = None
    busy: bool = False

    def discard(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child = None


@dataclass(eq=False)
class _Job:
    tenant: str
    op: str
    template: Any
    items: list[Any]
    keys: list[str]  # per item: what the quarantine remembers (the template, or the checked source)
    options: dict[str, Any]
    future: "asyncio.Future[None]"
    results: list[Any] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # indices without an answer, in order

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.pending = list(range(len(self.items)))

    def answer(self, index: int, value: Any) -> None:
        self.results[index] = value
        self.pending.remove(index)


class RenderPool:
    """Render processes shared fairly by tenants; `await` its methods from the event loop."""

    def __init__(
        self,
        *,
        processes: int = 2,
        timeout_seconds: float = 2.0,
        memory_mb: int = 512,
        quarantine_seconds: float = 300.0,
        sms_max_segments: int = 10,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.quarantine_seconds = quarantine_seconds
        self.sms_max_segments = sms_max_segments
        self._slots = [_Slot(n) for n in range(processes)]
        self._per_tenant = max(1, processes - 1)
        self._queues: dict[str, deque[_Job]] = {}  # insertion order is the round-robin order
        self._running: Counter[str] = Counter()
        self._quarantine: dict[tuple[str, str], tuple[float, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "RenderPool":
        return cls(
            processes=settings.render_processes,
            timeout_seconds=settings.render_timeout_seconds,
            memory_mb=settings.render_memory_mb,
            quarantine_seconds=settings.render_quarantine_seconds,
            sms_max_segments=settings.sms_max_segments,
        )

    @classmethod
    def shared(cls, settings: Settings) -> "RenderPool":
        """One pool per process and set of limits, for apps built without one (tests, benches):
        it is never closed, its processes end with the process."""
        key = (
            settings.render_processes,
            settings.render_timeout_seconds,
            settings.render_memory_mb,
            settings.render_quarantine_seconds,
            settings.sms_max_segments,
        )
        pool = _SHARED.get(key)
        if pool is None:
            pool = _SHARED[key] = cls.from_settings(settings)
        return pool

    # ---- what callers use ----

    async def check(self, tenant: str, sources: Mapping[str, tuple[str, bool]]) -> dict[str, RenderProblem]:
        """The problems of template sources about to be saved, by field: `{name: (source, html)}`."""
        names = list(sources)
        items = [sources[name] for name in names]
        keys = [_digest(CHECK, item) for item in items]
        results = await self._submit(tenant, CHECK, None, items, keys, {})
        return {name: result for name, result in zip(names, results, strict=True) if result is not None}

    async def render_email(
        self, tenant: str, source: EmailSource, contexts: Sequence[Mapping[str, Any]], *, locate: bool = False
    ) -> list[EmailParts | RenderProblem]:
        """One email per recipient context; `locate` names the failing part (previews). A plain
        template (providers.plain_templates) renders here; the rest in the render processes."""
        template = (source.subject, source.html, source.text)
        key = _digest(EMAIL, template)
        options = {"locate": locate}
        done = plain_emails(source.subject, source.html, source.text, contexts)
        return await filled(
            done,
            contexts,
            lambda rest: self._submit(tenant, EMAIL, template, rest, [key] * len(rest), options),
        )

    async def render_sms(
        self, tenant: str, body: str | None, contexts: Sequence[Mapping[str, Any]]
    ) -> list[str | RenderProblem]:
        """One SMS body per recipient context; a body over `sms_max_segments` is TOO_LONG. A plain
        template (providers.plain_templates) renders here; the rest in the render processes."""
        key = _digest(SMS, body)
        options = {"max_segments": self.sms_max_segments}
        done: list[str | RenderProblem | None] = []
        for body_text in plain_sms(body, contexts):
            too_long = None if body_text is None else too_many_segments(body_text, self.sms_max_segments)
            done.append(
                body_text if too_long is None else RenderProblem(too_long, reason=TOO_LONG, field="body")
            )
        return await filled(
            done, contexts, lambda rest: self._submit(tenant, SMS, body, rest, [key] * len(rest), options)
        )

    async def close(self) -> None:
        """Kill the processes; jobs not finished fail."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for slot in self._slots:
            slot.discard()
        for queue in self._queues.values():
            for job in queue:
                if not job.future.done():
                    job.future.set_exception(RuntimeError("the render pool is closed"))
        self._queues.clear()

    def pids(self) -> list[int | None]:
        """The process ids of the slots (None: not started); for operators and tests."""
        return [slot.child.pid if slot.child is not None else None for slot in self._slots]

    # ---- queueing and dispatch ----

    async def _submit(
        self, tenant: str, op: str, template: Any, items: list[Any], keys: list[str], options: dict[str, Any]
    ) -> list[Any]:
        if self._closed:
            raise RuntimeError("the render pool is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._rebind(loop)
        job = _Job(tenant, op, template, items, keys, options, loop.create_future())
        self._fail_quarantined(job)
        if job.pending:
            self._queues.setdefault(tenant, deque()).append(job)
            self._dispatch()
            await job.future
        return job.results

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """A pool used from a new event loop (the old one is gone): its processes talk through
        the old loop's transports, so they are replaced."""
        for slot in self._slots:
            if slot.child is not None and not slot.child.gone:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.child.pid, signal.SIGKILL)
            slot.child, slot.busy = None, False
        self._queues.clear()
        self._running.clear()
        self._tasks.clear()
        self._loop = loop

    def _dispatch(self) -> None:
        for slot in self._slots:
            if slot.busy:
                continue
            job = self._next_job()
            if job is None:
                return
            slot.busy = True
            self._running[job.tenant] += 1
            task = asyncio.get_running_loop().create_task(self._run(slot, job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_job(self) -> _Job | None:
        """The first job of the next tenant in turn that may use one more process."""
        for tenant in list(self._queues):
            if self._running[tenant] >= self._per_tenant:
                continue
            queue = self._queues.pop(tenant)
            job = queue.popleft()
            if queue:
                self._queues[tenant] = queue  # the tenant goes to the back of the round
            if job.future.done():  # its caller went away (a cancelled activity)
                return self._next_job()
            return job
        return None

    def _requeue(self, job: _Job) -> None:
        """The rest of a job that gave its process back: first of its tenant, last in the round."""
        queue = self._queues.pop(job.tenant, deque())
        queue.appendleft(job)
        self._queues[job.tenant] = queue

    async def _run(self, slot: _Slot, job: _Job) -> None:
        try:
            await self._serve(slot, job)
        except Exception as err:
            slot.discard()
            if not job.future.done():
                job.future.set_exception(err)
        except BaseException:
            slot.discard()
            raise
        finally:
            slot.busy = False
            self._running[job.tenant] -= 1
            if not job.future.done():
                if self._closed:
                    job.future.set_exception(RuntimeError("the render pool is closed"))
                elif job.pending:
                    self._requeue(job)
                else:
                    job.future.set_result(None)
            if not self._closed:
                self._dispatch()

    async def _serve(self, slot: _Slot, job: _Job) -> None:
        """Send the job's unanswered items to the slot's process and take its answers, until the
        job is done or gives the process back (its slice, or after a limit)."""
        self._fail_quarantined(job)
        if not job.pending:
            return
        sent = list(job.pending)
        request = (job.op, job.template, [job.items[i] for i in sent], SLICE_SECONDS, job.options)
        child = await self._send(slot, request)
        for index in sent:
            try:
                answer = await asyncio.wait_for(child.receive(), self.timeout_seconds)
            except TimeoutError:
                verb = "be checked" if job.op == CHECK else "render"
                self._hit_limit(
                    slot, job, index, f"the template took longer than {self.timeout_seconds:g} s to {verb}"
                )
                return
            except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError, EOFError):
                # The process died under the render: the memory limit, or something worse.
                self._hit_limit(slot, job, index, "the render process stopped while rendering this template")
                return
            if answer[0] == "pause":
                return
            if answer[0] == "ok":
                job.answer(index, _checked(job.op, answer[1]))
                continue
            _, reason, message, field_name, limit = answer
            if limit is None:
                job.answer(index, RenderProblem(message, reason=reason, field=field_name))
                continue
            job.answer(index, RenderLimitProblem(message, reason=reason, field=field_name))
            self._remember(job, index, message)
            # The process stopped after this answer (its "pause" is left unread), and what is
            # left of one after a MemoryError is not trusted: a fresh one takes the next job.
            slot.discard()
            return

    async def _send(self, slot: _Slot, request: tuple[Any, ...]) -> _Child:
        """Send a request to the slot's process, starting one if it has none; a process that died
        while idle (nothing of this job was sent yet) is replaced once."""
        for attempt in range(2):
            if slot.child is None:
                slot.child = await self._start()
            try:
                await asyncio.wait_for(slot.child.send(request), self.timeout_seconds)
                return slot.child
            except (ConnectionError, TimeoutError):
                slot.discard()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _hit_limit(self, slot: _Slot, job: _Job, index: int, message: str) -> None:
        log.warning("render process killed for tenant %s: %s", job.tenant, message)
        slot.discard()
        job.answer(index, RenderLimitProblem(message))
        self._remember(job, index, message)

    def _remember(self, job: _Job, index: int, message: str) -> None:
        if self.quarantine_seconds > 0:
            until = time.monotonic() + self.quarantine_seconds
            self._quarantine[(job.tenant, job.keys[index])] = (until, message)

    def _fail_quarantined(self, job: _Job) -> None:
        """Answer at once the items whose template recently hit a limit."""
        if not self._quarantine:
            return
        now = time.monotonic()
        for key, (until, _) in list(self._quarantine.items()):
            if until <= now:
                del self._quarantine[key]
        for index in list(job.pending):
            found = self._quarantine.get((job.tenant, job.keys[index]))
            if found is not None:
                message = f"{found[1]}; this template is not rendered again for a while"
                job.answer(index, RenderLimitProblem(message))

    async def _start(self) -> _Child:
        """A new render process, forked by the forking server."""
        loop = asyncio.get_running_loop()
        pid, sock = await loop.run_in_executor(None, _FORKER.fork, self.memory_mb)
        reader, writer = await asyncio.open_connection(sock=sock)
        child = _Child(pid, reader, writer)
        try:
            hello = await asyncio.wait_for(child.receive(), START_SECONDS)
            if hello[0] != "ready":
                raise ConnectionError(f"unexpected greeting {hello[0]!r}")
        except BaseException as err:
            child.kill()
            if isinstance(err, Exception):
                raise RuntimeError(f"a render process did not start: {err!r}") from err
            raise
        return child


_SHARED: dict[tuple[Any, ...], RenderPool] = {}


def _digest(op: str, template: Any) -> str:
    return hashlib.blake2b(repr((op, template)).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
