"""Run the configured behaviours over each queued packet and merge their actions.

Pure apart from the behaviours' own state: ``decide(raw, now)`` parses the
packet, updates flow state, asks each behaviour in stage order, and returns one
``Decision`` (verdict, mark, delay, packets to inject, log records). The daemon
applies it; unit tests call it directly with hand-built packets.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .actions import Delay, Drop, Inject, Log, Mark, Trigger
from .behaviours.base import Behaviour, Context
from .config import CensorConfig
from .first_bytes import Seen
from .packet import MalformedPacket, parse
from .registry import BEHAVIOURS
from .streams import StreamTable


@dataclass
class Decision:
    """What to do with one queued packet."""

    drop: bool = False
    mark: int = 0
    delay: float = 0.0
    injects: list[Inject] = field(default_factory=list)
    logs: list[dict[str, object]] = field(default_factory=list)


def log_record(behaviour: str, flow: dict[str, object], action: str, details: dict[str, object]) -> dict[str, object]:
    """One action-log line (the daemon adds the time)."""
    return {"behaviour": behaviour, "flow": flow, "action": action, **details}


class Engine:
    """The configured behaviours plus shared flow state."""

    def __init__(self, behaviours: list[Behaviour]) -> None:
        self.behaviours = sorted(behaviours, key=lambda b: b.stage)  # stable: config order within a stage
        self.streams = StreamTable()

    def decide(self, raw: bytes, now: float) -> Decision:
        """The decision for the packet ``raw`` (an IP packet) at monotonic time ``now``."""
        d = Decision()
        try:
            pkt = parse(raw)
        except MalformedPacket:
            return d
        seen = Seen(pkt)
        if pkt.is_tcp:
            seen.stream, seen.grew = self.streams.update(pkt, now)
        triggers: list[Trigger] = []
        for b in self.behaviours:
            for a in b.on_packet(seen, now):
                if isinstance(a, Drop):
                    d.drop = True
                elif isinstance(a, Mark):
                    d.mark |= a.bits
                elif isinstance(a, Delay):
                    d.delay = max(d.delay, a.seconds)
                elif isinstance(a, Inject):
                    d.injects.append(a)
                elif isinstance(a, Log):
                    d.logs.append(log_record(b.name, pkt.flow(), a.action, a.details))
                elif isinstance(a, Trigger):
                    triggers.append(a)
            if d.drop:
                break
        for t in triggers:
            flow = {"client": t.client, "server": t.server, "port": t.port}
            for b in self.behaviours:
                for a in b.on_trigger(t.client, t.server, t.port, t.reason, now):
                    if isinstance(a, Log):
                        d.logs.append(log_record(b.name, flow, a.action, a.details))
        if d.drop:
            d.delay, d.mark = 0.0, 0
        return d


def build_behaviours(
    config: CensorConfig, *, state_dir: Path, log: Callable[[str, dict[str, object], str, dict[str, object]], None],
    rng: random.Random | None = None,
) -> list[Behaviour]:
    """Instantiate the configured behaviours (no side effects until ``start``)."""
    rng = rng or random.Random(config.seed)
    out = []
    for i, bc in enumerate(config.behaviours):
        ctx = Context(index=i, client_side=config.client_side, server_side=config.server_side,
                      state_dir=state_dir, rng=rng, log=log)
        out.append(BEHAVIOURS[bc.name](bc.params, ctx))
    return out
