"""Machine CPU spent during a benchmark, split by the part of the system that spent it.

A throughput ratio alone hides where the time goes on a 2-core box where every part shares the
cores, so `bench.throughput` also reports CPU milliseconds per message for each part: the bench
process (the worker and the API, in one process here), the render processes, Postgres, and the
Temporal server. The sinks stand for the outside world and are left out, as the load generator of
the raw ceiling is what the ceiling measures.

Read from /proc: a process's user + system time plus the time of its children it has waited for
(so a Postgres backend that exits during the run is still counted, through the postmaster). A
figure is the sum, over the processes of a part, of what each spent between two readings: a process
that started meanwhile counts from zero, and one that is gone by the second reading counts through
its parent: what it spent before the first reading is taken off the parent's children's time, which
holds its whole life once reaped (a Postgres connection open since the seeding and closed mid-run
otherwise added its 0.4 s of seeding to the campaign's Postgres figure, 0.02 ms per SMS at 20,000).
Summing each part first and subtracting the sums instead let a whole process tree that exited
mid-run (another benchmark's Postgres shutting down) cancel out what the others spent: a part then
read 0.
"""

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PARTS = ("worker+API", "render", "Postgres", "Temporal")


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    ticks: int


def _processes() -> list[_Proc]:
    found: list[_Proc] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is the state (stat field 3): utime..cstime are stat fields 14..17.
        ticks = sum(int(x) for x in fields[11:15])
        found.append(_Proc(int(entry.name), int(fields[1]), comm, cmdline, ticks))
    return found


def _descends(proc: _Proc, ancestor: int, parents: dict[int, int]) -> bool:
    pid = proc.ppid
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        pid = parents.get(pid, 0)
    return False


@dataclass(frozen=True)
class Reading:
    seconds: dict[str, dict[int, float]]  # part -> {pid: CPU seconds so far, reaped children's too}
    parents: dict[int, int]  # pid -> parent pid


def reading(sink_pid: int | None = None) -> Reading:
    """CPU seconds so far of each process of each part (see PARTS): this benchmark process and the
    workers it started, their render processes, every Postgres process of the machine (the
    benchmarks assume nothing else uses the server meanwhile) and the Temporal dev server; the
    sinks are left out."""
    me = os.getpid()
    procs = _processes()
    parents = {p.pid: p.ppid for p in procs}
    render_servers = [p.pid for p in procs if "providers.render_child" in p.cmdline]
    parts: dict[str, dict[int, float]] = {part: {} for part in PARTS}
    for p in procs:
        seconds = p.ticks / TICKS
        if p.pid == me:
            parts["worker+API"][p.pid] = seconds
        elif p.comm.startswith("postgres"):
            parts["Postgres"][p.pid] = seconds
        elif "temporal" in p.cmdline and "start-dev" in p.cmdline:
            parts["Temporal"][p.pid] = seconds
        elif sink_pid is not None and (p.pid == sink_pid or _descends(p, sink_pid, parents)):
            continue
        elif p.pid in render_servers or any(_descends(p, r, parents) for r in render_servers):
            parts["render"][p.pid] = seconds  # a render pool's forking server and its processes
        elif _descends(p, me, parents):
            parts["worker+API"][p.pid] = seconds  # a worker in its own process (--worker-processes)
    return Reading(parts, parents)


def spent(before: Reading, after: Reading) -> dict[str, float]:
    """CPU seconds each part spent between the readings, process by process (see above)."""
    spent: dict[str, float] = {}
    for part in PARTS:
        was, now = before.seconds[part], after.seconds[part]
        total = sum(max(seconds - was.get(pid, 0.0), 0.0) for pid, seconds in now.items())
        # Gone meanwhile, reaped by a parent still here: its life so far is in the parent's figure.
        total -= sum(s for pid, s in was.items() if pid not in now and before.parents.get(pid) in now)
        spent[part] = max(total, 0.0)
    return spent
