"""Added latency, in user space: queued packets are held and accepted later.

The kernel has no netem here (LAB-NOTES), so every packet to or from the listed
addresses (or every forwarded packet when none are listed) is queued and its
verdict given ``delay_ms`` later: each direction is delayed, so the round-trip
time grows by twice the delay (LAB-NOTES: 50 ms each way gave a 100.8 ms RTT).
Throughput is bounded by the queue rate (~25-60k packets/s). The first delayed
packet of each flow direction is logged, not every packet.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..actions import Action, Delay, Log
from ..first_bytes import Seen
from .base import STAGE_SHAPE, Behaviour, Context, Rule, family_of
from .ip_blackhole import normalise

MAX_REMEMBERED = 65536


@dataclass(frozen=True)
class Params:
    """``delay_ms`` per direction; ``addresses`` to delay traffic to/from (empty = all)."""

    delay_ms: float
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.delay_ms <= 10_000:
            raise ValueError("delay_ms must be in (0, 10000]")
        for a in self.addresses:
            ipaddress.ip_address(a)


class Latency(Behaviour):
    """Hold packets for a fixed time."""

    name = "latency"
    Params = Params
    stage = STAGE_SHAPE

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.addresses = normalise(params.addresses)
        self.logged: set[tuple[str, int, str, int, int]] = set()

    def queue_rules(self) -> list[Rule]:
        """All packets to and from the addresses (or all forwarded packets)."""
        if not self.addresses:
            return [Rule("filter", ())]
        rules = []
        for a in sorted(self.addresses):
            rules += [Rule("filter", ("-d", a), family_of(a)), Rule("filter", ("-s", a), family_of(a))]
        return rules

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Delay matching packets; log the first of each flow direction."""
        pkt = seen.pkt
        if self.addresses and pkt.src not in self.addresses and pkt.dst not in self.addresses:
            return []
        out: list[Action] = [Delay(self.params.delay_ms / 1000.0)]
        key = (*pkt.key(), pkt.proto)
        if key not in self.logged:
            if len(self.logged) >= MAX_REMEMBERED:
                self.logged.clear()
            self.logged.add(key)
            out.append(Log("delay", {"delay_ms": self.params.delay_ms}))
        return out
