"""The send pipeline of one page: render ahead, then claim, send and record one message per slot.

    source -> gates -> renderer -> feed (per channel) -> slots (deliverer) -> ledger writer

The renderer works ahead and puts rendered messages, still unclaimed, on the channel's feed
(bounded: Deliverer.feed_chunks chunks). Each slot (an SMTP connection, an SMS request slot) takes
the next message, claims it, sends it and records the answer. A slot claims at most one message
ahead of the one it is sending, and that claim commits with the previous message's answer, so at
any time a slot has at most two messages claimed without an answer in the ledger: a crash leaves at
most 2 x slots UNKNOWN per channel (README "Delivery guarantees (the ledger)"), whatever the page
or wave size.

Pause and cancel set `halted`: slots stop taking messages within one send, release the claim they
hold ahead, and let the message on the wire finish. A message nothing was sent for releases its
claim: when the provider was unreachable the page stops (`provider_down`); when the provider only
deferred that message (SMTP 4xx, SMS 429 after the retries) the rest of the page goes on
(`deferred`), so one address never holds up the others. Either way the page then fails, and
Temporal retries it later; the retry finds every decided message in the ledger.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from activities.send.deliverers import Deliverer, Slot
from activities.send.model import Answer, Message, Outgoing
from activities.send.renderer import Renderer
from activities.send.writer import LedgerWriter
from core import metrics
from core.enums import Outcome
from core.ids import new_id

_REFUSALS = (Outcome.FAILED, Outcome.BOUNCED)


class Empty:
    """No rendered message is ready yet (the feed has not ended)."""


EMPTY = Empty()


class Feed:
    """Rendered messages of one channel waiting for a slot, bounded so rendering stays only a
    little ahead of sending (memory), and closed when the renderer is done.

    Only `put` waits, for room; the end marker takes no room, so closing never waits (a renderer
    cancelled mid-page must not wait in its `finally` for slots that are gone), and the marker is
    put back by each taker, so every slot sees the end."""

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[Outgoing | None] = asyncio.Queue()
        self._room = asyncio.Semaphore(capacity)
        self._closed = False

    async def put(self, item: Outgoing) -> None:
        await self._room.acquire()
        self._queue.put_nowait(item)

    def close(self) -> None:
        """No more messages (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def drain(self) -> None:
        """Drop what waits (rendered, never claimed) and end the feed: a stopping page's slots
        leave, the renderer must not wait for room that nobody will make, and a slot that comes
        to take later (it looked at `stopping` before an await) must find the end."""
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                self._room.release()
        self._closed = False
        self.close()

    async def take(self) -> Outgoing | None:
        return self._taken(await self._queue.get())

    def take_nowait(self) -> Outgoing | bool | None:
        """The next message, None at the end, False when none is ready yet."""
        try:
            return self._taken(self._queue.get_nowait())
        except asyncio.QueueEmpty:
            return False

    def _taken(self, item: Outgoing | None) -> Outgoing | None:
        if item is None:
            self._queue.put_nowait(None)  # every slot sees the end
        else:
            self._room.release()
        return item


@dataclass(slots=True)
class _Ahead:
    """A step queued while a message is on the wire: it records `answers` and claims `candidate`
    (None: no message was ready, or none will come: `ended`)."""

    verdict: "asyncio.Future[bool]"
    answers: list[Answer]
    candidate: Outgoing | None
    ended: bool

    def cancel(self) -> None:
        self.verdict.cancel()


_Advancing = asyncio.Task["Outgoing | Empty | None"]


class Pipeline:
    def __init__(
        self,
        *,
        tenant_id: str,
        renderer: Renderer,
        deliverers: Sequence[Deliverer],
        writer: LedgerWriter,
        chunk: int,
    ) -> None:
        self._tenant = tenant_id
        self._renderer = renderer
        self._deliverers = {d.channel.value: d for d in deliverers}
        self._writer = writer
        self._chunk = chunk
        self.halted = asyncio.Event()
        self.provider_down: str | None = None
        # A message the provider deferred (its claim released): the page goes on, then fails.
        self.deferred: str | None = None
        self.sent = 0
        # What the providers answered on this attempt, and how many of those were refusals
        # (bounces, failures): what auto-pause judges (a template error is not the provider's).
        self.answered = 0
        self.refused = 0
        self._counts = metrics.MessageCounts(tenant_id)

    def stopping(self) -> bool:
        return self.halted.is_set() or self.provider_down is not None

    async def run(self, messages: Sequence[Message]) -> None:
        """Send every message once (or stop early when halted or a provider is down)."""
        by_channel = {ch: sum(1 for m in messages if m.channel == ch) for ch in self._deliverers}
        feeds = {
            ch: Feed(self._deliverers[ch].feed_chunks * self._chunk) for ch, n in by_channel.items() if n
        }
        self._writer.use_lanes(max((self._deliverers[ch].commit_lanes for ch in feeds), default=1))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._render(messages, feeds))
                for channel, feed in feeds.items():
                    deliverer = self._deliverers[channel]
                    for _ in range(min(deliverer.slots, by_channel[channel])):
                        group.create_task(self._slot(deliverer, feed))
        except BaseExceptionGroup as group_error:
            # The parts share one fate; the page fails with the first cause, not a group of them.
            raise group_error.exceptions[0] from None

    async def wait_to_retry(self, seconds: float) -> bool:
        """Sleep before a provider retry; False (stop retrying) as soon as the page is halted."""
        try:
            await asyncio.wait_for(self.halted.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def _render(self, messages: Sequence[Message], feeds: dict[str, Feed]) -> None:
        try:
            for start in range(0, len(messages), self._chunk):
                if self.stopping():
                    return
                rendered = await self._renderer.render(messages[start : start + self._chunk])
                if rendered.failed:
                    await self._writer.finals(
                        [
                            m.final(new_id("delivery"), Outcome.FAILED, problem.reason, str(problem)[:500])
                            for m, problem in rendered.failed
                        ]
                    )
                for item in rendered.ready:
                    if self.stopping():
                        return
                    await feeds[item.message.channel].put(item)
        finally:
            for feed in feeds.values():
                feed.close()

    async def _slot(self, deliverer: Deliverer, feed: Feed) -> None:
        """Wait for rendered messages without holding a provider slot, then lease one and send
        while messages are ready; give the slot back whenever the feed runs dry, so a page whose
        rendering is slow (a heavy template) never keeps another page (another tenant) waiting."""
        try:
            while not self.stopping():
                first = await feed.take()
                if first is None or self.stopping():
                    return  # the end, or a page stopping: `first` was never claimed
                async with deliverer.lease() as slot:
                    with self._writer.sending():
                        more = await self._send_while_ready(slot, feed, first, deliverer.gather_seconds)
                if not more:
                    return
        finally:
            if self.stopping():
                feed.drain()

    async def _send_while_ready(self, slot: Slot, feed: Feed, first: Outgoing, gather: float) -> bool:
        """Claim, send and record on one leased slot while rendered messages are ready; False when
        the feed has ended (or the page stops), True when it is only empty for now. The step taken
        while a message is on the wire may wait `gather` seconds to commit with other slots' steps
        (activities/send/writer.py, "Gathering")."""
        if not await slot.admit(self.wait_to_retry):
            return False  # halted while waiting for the rate limit: `first` was never claimed
        won = await self._writer.step(claim=first)
        current: Outgoing | Empty | None = first if won else await self._advance(feed, [], slot)
        previous: list[Answer] = []  # the answer of the message sent before `current`
        while isinstance(current, Outgoing):
            if self.stopping():
                # Record what came back, release the claim held ahead: nothing was sent for it.
                await self._writer.step(answers=[*previous, Answer.not_sent(current, "halted")])
                self._account(previous)
                return False
            # Record the previous answer and claim the next message while this one is on the wire.
            ahead = self._ahead(feed, previous, slot, gather)
            try:
                answer = await slot.deliver(current, self.wait_to_retry)
                if answer.deferred:  # this message only: the others go on
                    self.deferred = answer.detail
                elif (
                    answer.outcome is None and not self.halted.is_set()
                ):  # nothing left the client: stop the page
                    self.provider_down = answer.detail or "unreachable"
                current = await self._next(ahead, feed, slot)
            except BaseException:
                ahead.cancel()
                raise
            previous = [answer]
        if previous:  # the last answer of this run: recorded before the slot is given back
            await self._writer.step(answers=previous)
            self._account(previous)
        return current is EMPTY and not self.stopping()

    def _ahead(self, feed: Feed, answers: list[Answer], slot: Slot, gather: float) -> "_Ahead | _Advancing":
        """Start the step a slot takes while its message is on the wire (`_advance`). Without a
        rate limit its first round needs no await (no token to wait for), so it is queued here
        and only its verdict is awaited (`_next`): no task per message (a task and its await cost
        6.2 µs on this box, a future 3.3). A throttled slot may have to wait for its token before
        it claims, so it runs `_advance` as a task."""
        if slot.throttled():
            return asyncio.create_task(self._advance(feed, answers, slot, gather))
        item, candidate = self._take(feed)
        verdict = self._writer.submit(answers=answers, claim=candidate, wait=gather)
        return _Ahead(verdict, answers, candidate, ended=item is None)

    async def _next(self, ahead: "_Ahead | _Advancing", feed: Feed, slot: Slot) -> "Outgoing | Empty | None":
        """The message a slot sends next, once the step `_ahead` started has committed."""
        if not isinstance(ahead, _Ahead):
            return await ahead
        won = await ahead.verdict
        self._account(ahead.answers)
        if ahead.candidate is None:
            return None if ahead.ended else EMPTY
        if won:
            return ahead.candidate
        # Another attempt holds that message (or it was decided meanwhile): take the next.
        return await self._advance(feed, [], slot)

    async def _advance(
        self, feed: Feed, answers: list[Answer], slot: Slot, gather: float = 0.0
    ) -> "Outgoing | Empty | None":
        """Record `answers` and claim the next ready message; EMPTY when none is rendered yet,
        None when the feed has ended or the page stops. Never waits for the renderer: a slot
        holding a provider connection must not idle on it. The next message's rate-limit token
        is taken before its claim; when that means waiting, the answers are recorded first. The
        step may wait `gather` seconds for other slots' steps (it runs while a message is on the
        wire); a message claimed again after a lost claim does not wait."""
        while True:
            item, candidate = self._take(feed)
            if candidate is not None and not slot.ready():
                if answers:
                    await self._writer.step(answers=answers)
                    self._account(answers)
                    answers = []
                if not await slot.admit(self.wait_to_retry):
                    return None  # halted while throttled: `candidate` was never claimed
            elif candidate is not None:
                await slot.admit(self.wait_to_retry)  # a token at hand: no wait
            won = await self._writer.step(answers=answers, claim=candidate, wait=gather)
            self._account(answers)
            answers = []
            gather = 0.0
            if candidate is None:
                return EMPTY if item is False else None
            if won:
                return candidate
            # Another attempt holds that message (or it was decided meanwhile): take the next.

    def _take(self, feed: Feed) -> tuple[Outgoing | bool | None, Outgoing | None]:
        """The feed's next item without waiting (None once the page stops: its end) and the
        message in it, if any."""
        item = None if self.stopping() else feed.take_nowait()
        return item, item if isinstance(item, Outgoing) else None

    def _account(self, answers: list[Answer]) -> None:
        """Count recorded answers (a release is not a message)."""
        for a in answers:
            outcome = a.outcome
            if outcome is None:
                continue
            self.answered += 1
            if outcome == Outcome.SENT:
                self.sent += 1
            elif outcome in _REFUSALS:
                self.refused += 1
            self._counts.count(a.item.message.channel, outcome)
