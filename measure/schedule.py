"""When a scheduled campaign runs: intervals, slots, catch-up and jitter.

A schedule ``every`` D with ``jitter`` J divides time into slots that start at
multiples of D since the Unix epoch (so 6h slots start at 00:00, 06:00, ...
UTC, the same instants systemd's ``OnCalendar=*-*-* 00/6:00:00`` uses). The
run for slot S may start at S + offset(S), where offset is a deterministic
pseudo-random delay in [0, J) derived from the campaign name and the slot.

Catch-up: a run is due when the newest slot that has started is newer than
the last slot that ran. However many slots were missed while the machine was
down, exactly one run happens when it returns (the one for the newest slot).
``daemon`` and the cron ``tick`` share this logic and a state file; the
systemd timer gets the same semantics from ``Persistent=true``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from censorscope.probes.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> int:
    """Parse ``90s``, ``10m``, ``6h``, ``1d``, ``1h30m`` (or plain seconds) into seconds."""
    t = text.strip().lower()
    if t.isdigit():
        return int(t)
    pos = 0
    total = 0
    for m in _PART.finditer(t):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise ConfigError(f"bad duration {text!r}: use e.g. 90s, 10m, 6h, 1d, 1h30m")
    return total


def format_duration(seconds: int) -> str:
    """The shortest ``1h30m``-style text for ``seconds``."""
    if seconds == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


@dataclass(frozen=True)
class Schedule:
    """Slots of length ``every`` seconds from the epoch, with up to ``jitter`` seconds of delay."""

    name: str
    every: int
    jitter: int = 0

    def __post_init__(self) -> None:
        if self.every < 60:
            raise ConfigError("a schedule interval must be at least 1 minute")
        if not 0 <= self.jitter < self.every:
            raise ConfigError("jitter must be smaller than the interval")

    def slot_at(self, now: float) -> int:
        """Start (epoch seconds) of the newest slot that has begun at ``now``."""
        return int(now // self.every) * self.every

    def offset(self, slot: int) -> int:
        """The deterministic jitter delay of ``slot``, in [0, jitter)."""
        if self.jitter == 0:
            return 0
        digest = hashlib.sha256(f"{self.name}\0{slot}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.jitter

    def due(self, now: float, last_slot: int | None) -> int | None:
        """The slot to run now, or None.

        The newest begun slot is due once its jitter delay has passed and no run
        for it (or a later slot) happened yet. Older missed slots are never run
        on their own: catching up means one run, for the newest slot.
        """
        slot = self.slot_at(now)
        if last_slot is not None and last_slot >= slot:
            return None
        if now < slot + self.offset(slot):
            return None
        return slot

    def next_wake(self, now: float, last_slot: int | None) -> float:
        """When to look again: the moment the next run becomes due (>= now)."""
        slot = self.slot_at(now)
        if last_slot is None or last_slot < slot:
            start = slot + self.offset(slot)
            if start > now:
                return float(start)
            return now
        nxt = slot + self.every
        return float(nxt + self.offset(nxt))


class ScheduleState:
    """The last slot that ran, kept in a small JSON file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last_slot(self) -> int | None:
        """The recorded slot, or None when the campaign never ran."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.path}: unreadable schedule state ({e})") from None
        slot = data.get("last_slot")
        return int(slot) if slot is not None else None

    def record(self, slot: int, **info: object) -> None:
        """Remember that ``slot`` ran (write to a temporary file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"last_slot": slot, **info}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
