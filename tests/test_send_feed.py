"""The send pipeline's feed (activities.send.pipeline.Feed): its end is never lost and closing it
never waits, so a page whose renderer is cancelled or whose slots have left cannot hang."""

import asyncio

from activities.send.model import Message, Outgoing
from activities.send.pipeline import Feed


def item(n: int) -> Outgoing:
    message = Message(customer={"run_id": "r", "id": f"c{n}"}, channel="SMS")  # type: ignore[arg-type]
    return Outgoing(message=message, delivery_id=f"d{n}", body="hi")


async def test_closing_a_full_feed_does_not_wait_and_every_taker_sees_the_end() -> None:
    feed = Feed(capacity=2)
    await feed.put(item(1))
    await feed.put(item(2))
    feed.close()  # full: returns at once (a cancelled renderer calls this in its `finally`)
    taken = [await asyncio.wait_for(feed.take(), 1) for _ in range(4)]
    assert [t.delivery_id if t else None for t in taken] == ["d1", "d2", None, None]
    assert feed.take_nowait() is None


async def test_a_slot_waiting_on_an_empty_feed_wakes_when_it_closes() -> None:
    feed = Feed(capacity=2)
    waiters = [asyncio.create_task(feed.take()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert feed.take_nowait() is False  # empty, not ended
    feed.close()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [None, None, None]


async def test_draining_a_stopping_feed_frees_the_renderer_and_ends_it() -> None:
    feed = Feed(capacity=1)
    await feed.put(item(1))
    blocked = asyncio.create_task(feed.put(item(2)))  # the renderer, waiting for room
    await asyncio.sleep(0.01)
    assert not blocked.done()
    feed.drain()  # the slots of a stopping page leave
    await asyncio.wait_for(blocked, 1)
    assert await asyncio.wait_for(feed.take(), 1) is None
