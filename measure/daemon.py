"""Run a campaign on a schedule, in-process (``censorscope daemon`` and ``schedule tick``).

The same semantics as the systemd timer, for containers and hosts without
systemd:

- a run missed while the process or machine was down happens once when it
  returns (``Schedule.due``);
- never two runs of one campaign at once (``RunLock``, shared with the timer
  and cron paths);
- SIGTERM stops starting new measurements, lets the ones in flight finish and
  be stored, and exits 0; the interrupted run is resumed (not restarted) if
  its slot is still the newest when the daemon comes back;
- one JSON log line per event on stdout (journald keeps them as they are).

Time is injected (``clock``, ``sleep``) so tests can drive a schedule through
days in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from censorscope.measure.lock import AlreadyRunning, RunLock
from censorscope.measure.schedule import Schedule, ScheduleState


@dataclass
class RunOutcome:
    """What one campaign run returned: its id, and whether every measurement was taken."""

    run_id: str
    complete: bool


#: (resume_run_id or None, stop event) -> outcome. Must store every finished measurement.
CampaignRun = Callable[[str | None, asyncio.Event], Awaitable[RunOutcome]]


def log_event(event: str, out: TextIO | None = None, **fields: Any) -> None:
    """Print one structured log line (JSON) and flush it."""
    line = {"ts": round(time.time(), 3), "event": event, **fields}
    stream = out or sys.stdout
    stream.write(json.dumps(line, default=str) + "\n")
    stream.flush()


class ScheduledCampaign:
    """One campaign under a schedule, with its state file and run lock."""

    def __init__(
        self,
        schedule: Schedule,
        state_dir: Path,
        run: CampaignRun,
        *,
        clock: Callable[[], float] = time.time,
        log: Callable[..., None] = log_event,
    ) -> None:
        self.schedule = schedule
        self.state = ScheduleState(state_dir / f"{schedule.name}.state.json")
        self.lock = RunLock(state_dir / f"{schedule.name}.lock")
        self.run = run
        self.clock = clock
        self.log = log

    def _previous(self) -> dict[str, Any]:
        try:
            return json.loads(self.state.path.read_text())
        except (OSError, ValueError):
            return {}

    async def run_slot(self, slot: int, stop: asyncio.Event) -> RunOutcome | None:
        """Run (or resume) the campaign for ``slot`` under the lock; None if another run holds it."""
        try:
            self.lock.acquire()
        except AlreadyRunning as e:
            self.log("skipped_overlap", campaign=self.schedule.name, slot=slot, reason=str(e))
            return None
        try:
            if self.lock.stale:
                self.log("stale_lock_recovered", campaign=self.schedule.name, previous=self.lock.stale)
            prev = self._previous()
            resume = prev.get("run_id") if prev.get("last_slot") == slot and not prev.get("complete") else None
            self.state.record(slot, run_id=resume, complete=False, started=self.clock())
            self.log("run_start", campaign=self.schedule.name, slot=slot, resume=resume)
            outcome = await self.run(resume, stop)
            self.state.record(slot, run_id=outcome.run_id, complete=outcome.complete, finished=self.clock())
            self.log(
                "run_end", campaign=self.schedule.name, slot=slot, run_id=outcome.run_id,
                complete=outcome.complete,
            )
            return outcome
        finally:
            self.lock.release()

    def due(self) -> int | None:
        """The slot due now, treating an interrupted run of the newest slot as not done."""
        prev = self._previous()
        last = prev.get("last_slot")
        if last is not None and not prev.get("complete", True):
            last = last - 1  # the slot started but did not finish: it is still due (resume)
        return self.schedule.due(self.clock(), last)

    async def tick(self, stop: asyncio.Event, *, force: bool = False) -> RunOutcome | None:
        """Run once if a slot is due (or unconditionally for the newest slot with ``force``)."""
        slot = self.schedule.slot_at(self.clock()) if force else self.due()
        if slot is None:
            self.log("not_due", campaign=self.schedule.name)
            return None
        return await self.run_slot(slot, stop)

    async def forever(self, stop: asyncio.Event, sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        """Loop until ``stop`` is set: run every due slot, sleep until the next one."""

        async def _sleep(seconds: float) -> None:
            try:
                await asyncio.wait_for(stop.wait(), timeout=seconds)
            except TimeoutError:
                pass

        sleeper = sleep or _sleep
        self.log("daemon_start", campaign=self.schedule.name, every=self.schedule.every, jitter=self.schedule.jitter)
        while not stop.is_set():
            slot = self.due()
            if slot is not None:
                outcome = await self.run_slot(slot, stop)
                if outcome is None:  # another process is running it: look again a bit later
                    await sleeper(min(60.0, self.schedule.every / 4))
                elif not outcome.complete and not stop.is_set():
                    # the run stopped by itself (e.g. the disk guard): retry later, not in a tight loop
                    self.log("run_incomplete_retry_later", campaign=self.schedule.name, run_id=outcome.run_id)
                    await sleeper(min(300.0, self.schedule.every / 4))
                continue
            prev = self._previous()
            wake = self.schedule.next_wake(self.clock(), prev.get("last_slot"))
            await sleeper(max(0.0, wake - self.clock()))
        self.log("daemon_stop", campaign=self.schedule.name)
