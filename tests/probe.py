"""A `/health` prober in a process of its own: `python -m tests.probe URL OUT [interval_s]`.

It runs apart from the test process so that what the test does on its own event loop (building a
large attack body, parsing answers) never shows up as server latency. Every `interval` it sends one
`GET /health` over a kept-alive connection and writes `<sent monotonic> <latency s>` lines to OUT,
until SIGTERM. `time.monotonic()` is the system-wide CLOCK_MONOTONIC, so the test can cut the
samples into windows with its own clock readings.
"""

import asyncio
import signal
import sys
import time
from typing import TextIO

import httpx


async def probe(url: str, out: TextIO, interval: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = (await client.get("/health")).status_code
            except httpx.HTTPError:
                status = 0
            latency = time.monotonic() - sent
            out.write(f"{sent:.6f} {latency:.6f} {status}\n")
            try:
                await asyncio.wait_for(stop.wait(), max(interval - latency, 0.0))
            except TimeoutError:
                pass


if __name__ == "__main__":
    with open(sys.argv[2], "w", buffering=1) as lines:
        asyncio.run(probe(sys.argv[1], lines, float(sys.argv[3]) if len(sys.argv) > 3 else 0.01))
