"""The thread count the engine decodes with, from the load other processes put on the CPU.

Each test runs on a stated machine (its cores and a /proc/stat written for them), so the
figures hold whatever machine runs the suite."""

from __future__ import annotations

from pathlib import Path

from lmserve.engine.cpu_share import CpuShare

TWO_CORES = [0, 1]


def share_on(tmp_path: Path, max_threads: int, cpus: list[int] = TWO_CORES,
             busy_ticks: int = 0) -> tuple[CpuShare, Path]:
    stat = tmp_path / f"stat-{len(cpus)}"
    write_stat(stat, cpus, busy_ticks)
    return CpuShare(max_threads, interval=0.0, proc_stat=str(stat), cpus=cpus), stat


def write_stat(path: Path, cpus: list[int], busy_ticks: int) -> None:
    """A /proc/stat whose every core has spent busy_ticks in user time."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{n} {busy_ticks} 0 0 1000 0 0 0 0 0 0" for n in cpus]
    path.write_text("\n".join(lines) + "\nintr 0\n")


def test_alone_keeps_every_thread(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 2)
    assert share.decide(0.0) == 2
    assert share.decide(0.4) == 2


def test_gives_up_the_cores_another_process_keeps_busy(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 2)
    assert share.decide(1.0) == 1  # another server decoding on one core's worth
    assert share.decide(2.0) == 1  # never below one thread
    assert share.decide(0.6) == 1


def test_takes_threads_back_only_once_the_others_are_quiet(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 2)
    share.threads = 1
    assert share.decide(1.0) == 1
    assert share.decide(0.45) == 1  # inside the hysteresis band: no flip-flop
    assert share.decide(0.2) == 2


def test_load_on_the_cores_it_leaves_spare_costs_nothing(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 1)
    assert share.decide(1.0) == 1
    half, _ = share_on(tmp_path, 2, cpus=[0, 1, 2, 3])
    assert half.decide(2.0) == 2  # the other two cores are busy: none of ours is
    assert half.decide(3.0) == 1


def test_reads_the_others_load_from_proc_stat(tmp_path: Path) -> None:
    share, stat = share_on(tmp_path, 2)
    assert share.available
    # Every core fully busy for far longer than this process ran: others use them all.
    write_stat(stat, TWO_CORES, 10**6)
    assert share.update() == 1
    # No new busy time since: the others went quiet and the threads come back.
    assert share.update() == 2


def test_only_the_cores_it_may_run_on_count(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, [0, 1, 2, 3], 0)
    share = CpuShare(2, interval=0.0, proc_stat=str(stat), cpus=[0, 1])
    # Cores 2 and 3 get busy, outside this process's affinity: nothing changes.
    stat.write_text(stat.read_text().replace("cpu2 0 ", "cpu2 1000000 ")
                    .replace("cpu3 0 ", "cpu3 1000000 "))
    assert share.update() == 2


def test_without_proc_stat_the_count_stays_fixed(tmp_path: Path) -> None:
    share = CpuShare(3, interval=0.0, proc_stat=str(tmp_path / "missing"))
    assert not share.available
    assert share.update() == 3


def test_more_threads_than_cores_shrink_to_the_cores(tmp_path: Path) -> None:
    share, _ = share_on(tmp_path, 8)
    assert share.decide(0.0) == 2
