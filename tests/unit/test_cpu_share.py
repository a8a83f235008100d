"""The thread count the engine decodes with, from the load other processes put on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmserve.engine.cpu_share import CpuShare

CPUS = sorted(os.sched_getaffinity(0))


def share_on(tmp_path: Path, max_threads: int, busy_ticks: int = 0) -> tuple[CpuShare, Path]:
    stat = tmp_path / "stat"
    write_stat(stat, busy_ticks)
    return CpuShare(max_threads, interval=0.0, proc_stat=str(stat)), stat


def write_stat(path: Path, busy_ticks: int) -> None:
    """A /proc/stat whose every core has spent busy_ticks in user time."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{n} {busy_ticks} 0 0 1000 0 0 0 0 0 0" for n in CPUS]
    path.write_text("\n".join(lines) + "\nintr 0\n")


def test_alone_keeps_every_thread(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, len(CPUS))
    assert share.decide(0.0) == len(CPUS)
    assert share.decide(0.4) == len(CPUS)


def test_gives_up_the_cores_another_process_keeps_busy(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 2)
    if len(CPUS) != 2:
        pytest.skip("the figures below are for a 2-core machine")
    assert share.decide(1.0) == 1  # another server decoding on one core's worth
    assert share.decide(2.0) == 1  # never below one thread
    assert share.decide(0.6) == 1


def test_takes_threads_back_only_once_the_others_are_quiet(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 2)
    if len(CPUS) != 2:
        pytest.skip("the figures below are for a 2-core machine")
    share.threads = 1
    assert share.decide(1.0) == 1
    assert share.decide(0.45) == 1  # inside the hysteresis band: no flip-flop
    assert share.decide(0.2) == 2


def test_load_on_the_cores_it_leaves_spare_costs_nothing(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 1)
    assert share.decide(len(CPUS)) == 1
    if len(CPUS) >= 4:
        half, _ = share_on(tmp_path, len(CPUS) // 2)
        assert half.decide(len(CPUS) / 2) == len(CPUS) // 2


def test_reads_the_others_load_from_proc_stat(tmp_path: Path) -> None:
    share, stat = share_on(tmp_path, len(CPUS))
    assert share.available
    # Every core fully busy for far longer than this process ran: others use them all.
    write_stat(stat, 10**6)
    assert share.update() == 1
    # No new busy time since: the others went quiet and the threads come back.
    assert share.update() == len(CPUS)


def test_without_proc_stat_the_count_stays_fixed(tmp_path: Path) -> None:
    share = CpuShare(3, interval=0.0, proc_stat=str(tmp_path / "missing"))
    assert not share.available
    assert share.update() == 3


def test_more_threads_than_cores_shrink_to_the_cores(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 4 * len(CPUS))
    assert share.decide(0.0) == len(CPUS)


def test_after_an_idle_spell_it_measures_afresh(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, 0)
    share = CpuShare(len(CPUS), interval=3600.0, first_interval=0.0, proc_stat=str(stat))
    write_stat(stat, 10**6)  # others were busy while the engine was idle...
    share.restart()  # ...and it wakes up: that history is dropped
    assert share.update() == len(CPUS)  # nothing new since: every thread
    write_stat(stat, 2 * 10**6)
    assert share.update() == len(CPUS)  # the next look waits for the regular interval
