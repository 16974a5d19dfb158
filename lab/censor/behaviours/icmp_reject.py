"""Reject traffic to listed addresses with ICMP destination-unreachable.

The error comes from the censor's client-side address (as a filtering router
would send it) unless ``source`` names another address; it quotes the start
of the rejected packet so the client's kernel maps it to its socket
(``connect`` fails with EHOSTUNREACH, ENETUNREACH, ECONNREFUSED or EACCES
depending on ``kind``). ICMP errors themselves are never answered.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from typing import Literal

from ..actions import Action, Drop, Inject, Log
from ..first_bytes import Seen
from ..forge import icmp_unreachable
from ..packet import ICMP, ICMPV6
from .base import STAGE_ADDRESS, Behaviour, Context, Rule, family_of
from .ip_blackhole import normalise


@dataclass(frozen=True)
class Params:
    """``kind`` of unreachable; ``source`` v4/v6 addresses (null = the censor's client-side address)."""

    addresses: tuple[str, ...]
    kind: Literal["net-unreachable", "host-unreachable", "port-unreachable", "admin-prohibited"] = "host-unreachable"
    source_v4: str | None = None
    source_v6: str | None = None
    ttl: int = 64

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("addresses must not be empty")
        for a in (*self.addresses, *(s for s in (self.source_v4, self.source_v6) if s)):
            ipaddress.ip_address(a)
        if not 1 <= self.ttl <= 255:
            raise ValueError("ttl outside 1-255")


def interface_addresses(ifname: str) -> tuple[str | None, str | None]:
    """The first global IPv4 and IPv6 address of ``ifname`` in this namespace."""
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", ifname], capture_output=True, text=True, check=True)
    v4 = v6 = None
    for link in json.loads(out.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("scope") != "global":
                continue
            if a["family"] == "inet" and v4 is None:
                v4 = a["local"]
            elif a["family"] == "inet6" and v6 is None:
                v6 = a["local"]
    return v4, v6


class IcmpReject(Behaviour):
    """Answer packets to listed addresses with ICMP unreachable and drop them."""

    name = "icmp_reject"
    Params = Params
    stage = STAGE_ADDRESS

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.addresses = normalise(params.addresses)
        self.sources = {4: params.source_v4, 6: params.source_v6}

    def start(self) -> None:
        """Find the censor's own addresses for unset sources."""
        if self.sources[4] and self.sources[6]:
            return
        v4, v6 = interface_addresses(self.ctx.client_side)
        self.sources = {4: self.sources[4] or v4, 6: self.sources[6] or v6}

    def queue_rules(self) -> list[Rule]:
        """Every packet to the listed addresses."""
        return [Rule("filter", ("-d", a), family_of(a)) for a in sorted(self.addresses)]

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Drop the packet and send the ICMP error (not for ICMP errors, to avoid loops)."""
        pkt = seen.pkt
        if pkt.dst not in self.addresses:
            return []
        if pkt.proto in (ICMP, ICMPV6) and pkt.payload and pkt.payload[0] not in (8, 128):  # echo requests only
            return [Drop(), Log("drop", {"reason": "icmp message not answered"})]
        source = self.sources[pkt.version]
        if source is None:
            return [Drop(), Log("drop", {"reason": f"no IPv{pkt.version} source address for the ICMP error"})]
        raw = icmp_unreachable(pkt, source, self.params.kind, ttl=self.params.ttl,
                               ip_id=self.ctx.rng.randrange(1, 0x10000))
        return [Drop(), Inject(raw, pkt.src, "icmp_unreachable"), Log("icmp_reject", {"kind": self.params.kind,
                                                                                   "source": source})]
