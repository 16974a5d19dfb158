"""IP blackholing: silently drop SYNs (or every packet) sent to listed addresses.

The drop happens in user space so that every dropped packet is logged; only
packets to the listed addresses are queued, so the cost is negligible.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from ..actions import Action, Drop, Log
from ..first_bytes import Seen
from .base import STAGE_ADDRESS, Behaviour, Context, Rule, family_of


@dataclass(frozen=True)
class Params:
    """``mode``: "syn" drops TCP connection attempts only; "all" drops every packet to the address."""

    addresses: tuple[str, ...]
    mode: Literal["syn", "all"] = "syn"

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("addresses must not be empty")
        for a in self.addresses:
            ipaddress.ip_address(a)


def normalise(addresses: tuple[str, ...]) -> frozenset[str]:
    """Addresses in the text form the packet parser produces."""
    return frozenset(str(ipaddress.ip_address(a)) for a in addresses)


class IpBlackhole(Behaviour):
    """Drop traffic to listed addresses."""

    name = "ip_blackhole"
    Params = Params
    stage = STAGE_ADDRESS

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.addresses = normalise(params.addresses)

    def queue_rules(self) -> list[Rule]:
        """Packets (or SYNs) to the listed addresses."""
        extra = ("-p", "tcp", "--syn") if self.params.mode == "syn" else ()
        return [Rule("filter", ("-d", a, *extra), family_of(a)) for a in sorted(self.addresses)]

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Drop matching packets."""
        pkt = seen.pkt
        if pkt.dst not in self.addresses or (self.params.mode == "syn" and not pkt.is_syn):
            return []
        return [Drop(), Log("drop", {"mode": self.params.mode})]
