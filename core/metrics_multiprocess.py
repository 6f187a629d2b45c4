"""Metrics that stay right when the API runs as several processes (`uvicorn --workers N`).

Each process of prometheus-client keeps its series in its own memory, so a scrape of `/metrics`
would see whichever worker answered it: counters that jump back and forth. In the client's
multiprocess mode every process writes its series to memory-mapped files in one directory, and a
scrape sums the files of all processes. The operator turns it on with the environment variable
`PROMETHEUS_MULTIPROC_DIR` (set before the processes start, pointing at an empty directory that
lives as long as the server, e.g. a tmpfs emptied at container start); without it nothing changes.

`exposition()` is what `/metrics` serves in both modes.
"""

import os

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared directory when multiprocess mode is on, else None."""
    return os.environ.get(ENV) or None


def exposition() -> bytes:
    """The series of every API process (multiprocess mode), else of this process."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def empty_directory(path: str) -> None:
    """Remove the files a previous server left (call before the workers start, never while they
    run): stale files would add a dead server's counts to the new one's."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
