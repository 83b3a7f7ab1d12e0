"""CPU and memory of a whole side of a comparison: a root process and everything it spawned.

helmops is one Python process plus a short-lived helm process per action; Flux is two long-lived Go processes;
the baseline is ``xargs`` plus its helm children. Peak memory of a side is the largest *sum* of resident memory
over its process tree seen by a sampler (every 0.2 s), since no kernel counter adds up concurrent processes.
The sampler also records the machine's load average, so every figure carries the load it was measured under.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import report


# --- pure parts ---------------------------------------------------------------------------------------
def ppid_from_stat(stat: str) -> int:
    """The parent pid (field 4) of a ``/proc/<pid>/stat`` line (the command name may hold spaces and parens)."""
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def descendants(roots: Iterable[int], parents: Mapping[int, int]) -> set[int]:
    """``roots`` and every process below them, from a ``{pid: ppid}`` table (roots not in it are dropped)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: set[int] = set()
    todo = [r for r in roots if r in parents]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


def summary(values: list[float]) -> dict[str, float | None]:
    """max and mean of samples (None when there are none), rounded for a report."""
    if not values:
        return {"max": None, "mean": None}
    return {"max": round(max(values), 2), "mean": round(sum(values) / len(values), 2)}


# --- /proc ------------------------------------------------------------------------------------------------
def parent_table() -> dict[int, int]:
    table: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = ppid_from_stat(Path(entry.path, "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
    return table


def rss_kb(pid: int) -> int:
    try:
        return report.status_kb(Path(f"/proc/{pid}/status").read_text(), "VmRSS") or 0
    except (OSError, ValueError):
        return 0


def cpu_seconds(pids: Iterable[int]) -> float:
    """Own CPU plus reaped children's CPU of each live pid (helm children reaped by the controller count)."""
    total = 0.0
    for pid in pids:
        try:
            own, children = report.cpu_seconds_from_stat(
                Path(f"/proc/{pid}/stat").read_text(), os.sysconf("SC_CLK_TCK")
            )
        except (OSError, ValueError, IndexError):
            continue
        total += own + children
    return total


@dataclass
class Sampler:
    """Samples a process tree's summed RSS and the 1-minute load average until stopped (a daemon thread)."""

    roots: Callable[[], list[int]]
    interval: float = 0.2
    peak_kb: int = 0
    loads: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        pids = descendants(self.roots(), parent_table())
        self.peak_kb = max(self.peak_kb, sum(rss_kb(p) for p in pids))
        self.loads.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float | None]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        load = summary(self.loads)
        return {
            "peak_mb": round(self.peak_kb / 1024, 1) if self.peak_kb else None,
            "load1_max": load["max"],
            "load1_mean": load["mean"],
        }
