"""Schedule semantics with a controllable clock: catch-up once, no overlap, jitter bounds."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from censorscope.measure.daemon import RunOutcome, ScheduledCampaign
from censorscope.measure.lock import AlreadyRunning, RunLock
from censorscope.measure.schedule import Schedule, ScheduleState, format_duration, parse_duration
from censorscope.probes.errors import ConfigError

H = 3600
DAY0 = 1_800_000_000 - (1_800_000_000 % 86400)  # a midnight UTC


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_parse_and_format_duration():
    assert parse_duration("6h") == 6 * H
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_duration("10m") == 600
    assert format_duration(5400) == "1h30m"
    for bad in ("", "6x", "h6", "1h 30m", "-5m"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_schedule_rejects_bad_parameters():
    with pytest.raises(ConfigError):
        Schedule("c", every=30)
    with pytest.raises(ConfigError):
        Schedule("c", every=H, jitter=H)


def test_due_once_per_slot_and_catch_up_once():
    s = Schedule("c", every=6 * H)
    assert s.due(DAY0 + 1, None) == DAY0
    assert s.due(DAY0 + 2 * H, DAY0) is None  # same slot already ran
    assert s.due(DAY0 + 6 * H, DAY0) == DAY0 + 6 * H
    # machine down for three days: exactly one run, for the newest slot
    back = DAY0 + 3 * 86400 + 7 * H
    assert s.due(back, DAY0) == DAY0 + 3 * 86400 + 6 * H
    assert s.due(back + 60, DAY0 + 3 * 86400 + 6 * H) is None


def test_jitter_bounds_are_respected_and_deterministic():
    s = Schedule("campaign-a", every=6 * H, jitter=600)
    offsets = [s.offset(DAY0 + k * 6 * H) for k in range(500)]
    assert all(0 <= o < 600 for o in offsets)
    assert len(set(offsets)) > 50  # really spread, not a constant
    assert offsets == [s.offset(DAY0 + k * 6 * H) for k in range(500)]
    slot = next(DAY0 + k * 6 * H for k in range(1, 100) if s.offset(DAY0 + k * 6 * H) > 0)
    off = s.offset(slot)
    assert s.due(slot + off - 1, slot - 6 * H) is None
    assert s.due(slot + off, slot - 6 * H) == slot
    assert s.next_wake(slot, slot - 6 * H) == slot + off


def test_state_file_round_trip(tmp_path: Path):
    st = ScheduleState(tmp_path / "s.json")
    assert st.last_slot() is None
    st.record(DAY0, run_id="r1", complete=True)
    assert st.last_slot() == DAY0
    assert json.loads((tmp_path / "s.json").read_text())["run_id"] == "r1"


def _campaign(tmp_path: Path, clock: Clock, runs: list, *, complete: bool = True, every: int = 6 * H,
              jitter: int = 0) -> ScheduledCampaign:
    async def run(resume: str | None, stop: asyncio.Event) -> RunOutcome:
        runs.append((clock.now, resume))
        return RunOutcome(run_id=resume or f"run{len(runs)}", complete=complete)

    return ScheduledCampaign(Schedule("c", every=every, jitter=jitter), tmp_path, run, clock=clock,
                             log=lambda *a, **k: None)


def test_daemon_runs_each_slot_once_and_catches_up_once(tmp_path: Path):
    clock = Clock(DAY0 + 10)
    runs: list = []
    sc = _campaign(tmp_path, clock, runs, jitter=300)
    stop = asyncio.Event()
    wakes: list[float] = []

    async def sleep(seconds: float) -> None:
        wakes.append(seconds)
        clock.now += seconds
        if clock.now > DAY0 + 2 * 86400:
            stop.set()

    asyncio.run(sc.forever(stop, sleep))
    slots = [int(t // (6 * H)) * 6 * H for t, _ in runs]
    assert slots == [DAY0 + k * 6 * H for k in range(len(slots))]  # one run per slot, in order
    assert len(runs) == 8  # two days of 6h slots
    for t, _ in runs:  # every run inside its slot's jitter window
        slot = int(t // (6 * H)) * 6 * H
        assert slot <= t < slot + 300 + 1

    # the daemon is down for 3 days; when it comes back exactly one run happens
    clock.now += 3 * 86400
    before = len(runs)
    stop2 = asyncio.Event()
    count = 0

    async def sleep2(seconds: float) -> None:
        nonlocal count
        count += 1
        clock.now += seconds
        stop2.set()  # look only once more after the catch-up

    asyncio.run(sc.forever(stop2, sleep2))
    assert len(runs) - before == 1


def test_interrupted_run_is_resumed_not_restarted(tmp_path: Path):
    clock = Clock(DAY0 + 10)
    runs: list = []
    sc = _campaign(tmp_path, clock, runs, complete=False)
    asyncio.run(sc.tick(asyncio.Event()))
    assert runs == [(DAY0 + 10, None)]
    # SIGTERM'd mid-run (complete=False): the next tick in the same slot resumes run1
    sc2 = _campaign(tmp_path, clock, runs, complete=True)
    clock.now += 60
    asyncio.run(sc2.tick(asyncio.Event()))
    assert runs[-1] == (DAY0 + 70, "run1")
    clock.now += 60
    assert asyncio.run(sc2.tick(asyncio.Event())) is None  # done for this slot
    assert len(runs) == 2


def test_no_overlap_while_lock_held(tmp_path: Path):
    clock = Clock(DAY0 + 10)
    runs: list = []
    sc = _campaign(tmp_path, clock, runs)
    with RunLock(tmp_path / "c.lock"):
        assert asyncio.run(sc.tick(asyncio.Event())) is None
    assert runs == []
    asyncio.run(sc.tick(asyncio.Event()))
    assert len(runs) == 1


def _hold_lock(path: str, ready) -> None:  # runs in a child process
    lock = RunLock(Path(path))
    lock.acquire()
    ready.set()
    time.sleep(60)


def test_lock_is_exclusive_across_processes_and_recovers_after_kill9(tmp_path: Path):
    path = tmp_path / "c.lock"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(path), ready))
    child.start()
    try:
        assert ready.wait(10)
        with pytest.raises(AlreadyRunning, match=str(child.pid)):
            RunLock(path).acquire()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    lock = RunLock(path)
    lock.acquire()  # the kernel dropped the dead holder's flock
    assert lock.stale is not None and lock.stale["pid"] == child.pid
    lock.release()
