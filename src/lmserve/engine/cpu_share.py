"""How many threads a decode should use, given what the rest of the machine is running.

llama.cpp's worker threads meet at a barrier after every operation of a graph, hundreds
of times per token, and wait for each other by spinning. When two inference processes each
run as many threads as there are cores, a spinning thread keeps waiting on a partner the
scheduler has parked, so every barrier can cost a time slice: two servers measured 77 tok/s
alone but 14 + 14 side by side, sometimes under 1 for minutes. Passive waiting shares fairly
but costs a quarter of the rate alone. A single-threaded decode has no barrier at all.

So, while the engine is busy, it looks every half second at how much CPU other processes
used on the cores it may run on (/proc/stat minus its own time) and gives up as many threads
as the others take beyond the cores it leaves spare: alone it keeps every thread, beside
another busy server both drop to what the cores can hold, and the threads come back once
the other goes quiet. After an idle spell it looks again sooner, since what others did
while it was idle says little about now. Where /proc is missing the count stays fixed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

_PROC_STAT = "/proc/stat"
# /proc/stat fields: user nice system idle iowait irq softirq steal guest guest_nice;
# guest time is already counted in user and nice.
_IDLE_FIELDS = (3, 4)
_COUNTED_FIELDS = 8

# Hysteresis: drop a thread once others need half a core more than is spare, take it back
# only when they leave 0.7 of a core, so a core half used does not flip the count each look.
_DROP_AT = 0.5
_RETAKE_AT = 0.7


def _allowed_cpus() -> list[int]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class _Sample:
    wall: float  # time.monotonic()
    busy: float  # CPU seconds spent on our cores by everyone
    own: float  # CPU seconds spent by this process


class CpuShare:
    """Decides the thread count from the load others put on this process's cores."""

    def __init__(self, max_threads: int, *, interval: float = 0.5,
                 first_interval: float = 0.2, proc_stat: str = _PROC_STAT,
                 cpus: list[int] | None = None) -> None:
        self.max_threads = max(1, max_threads)
        self.threads = self.max_threads
        self.interval = interval
        self.first_interval = first_interval
        self._due = interval  # seconds from the last sample to the next decision
        self._proc_stat = proc_stat
        self._cpus = cpus or _allowed_cpus()
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()

    @property
    def available(self) -> bool:
        """False where the machine's CPU accounting cannot be read: the count stays fixed."""
        return self._last is not None

    def restart(self) -> None:
        """After an idle spell: measure afresh, and decide after a short first window."""
        if self._last is not None:
            self._last = self._sample()
            self._due = self.first_interval

    def update(self) -> int:
        """The thread count to use now; looks at the machine at most once per interval."""
        if self._last is None or time.monotonic() - self._last.wall < self._due:
            return self.threads
        now = self._sample()
        if now is None:
            return self.threads
        elapsed = max(now.wall - self._last.wall, 1e-6)
        others = max(0.0, (now.busy - self._last.busy) - (now.own - self._last.own)) / elapsed
        self._last, self._due = now, self.interval
        self.threads = self.decide(others)
        return self.threads

    def decide(self, others: float) -> int:
        """The thread count when other processes keep `others` cores busy on average."""
        # Load on the cores we leave spare anyway costs us nothing; more threads than
        # cores we may run on would spin against each other, so room never exceeds them.
        spare = len(self._cpus) - self.max_threads
        room = self.max_threads - max(0.0, others - spare)
        if room < self.threads - _DROP_AT:
            wanted = math.floor(room + _DROP_AT)
        elif room >= self.threads + _RETAKE_AT:
            wanted = math.floor(room + 1 - _RETAKE_AT)
        else:
            wanted = self.threads
        return min(self.max_threads, max(1, wanted))

    def _sample(self) -> _Sample | None:
        try:
            with open(self._proc_stat, encoding="ascii") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        wanted = {f"cpu{n}" for n in self._cpus}
        busy_ticks = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            if name in wanted:
                values = [int(v) for v in rest.split()[:_COUNTED_FIELDS]]
                busy_ticks += sum(values) - sum(values[i] for i in _IDLE_FIELDS)
        return _Sample(time.monotonic(), busy_ticks / self._ticks, time.process_time())
