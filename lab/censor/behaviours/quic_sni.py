"""QUIC SNI blocking: decrypt client Initials, and on a listed SNI drop the 3-tuple's UDP for a while.

Zohaib et al., "Exposing and Circumventing SNI-based QUIC Censorship of the
Great Firewall of China" (USENIX Security 2025): the GFW decrypts QUIC
Initials (their keys derive from the visible Destination Connection ID),
reads the SNI and, on a match, drops every UDP packet of the
(client, server, server port) 3-tuple for 180 s; TCP to the same host is
unaffected. Only UDP to ``ports`` is queued (default 443).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions import Action, Drop, Log, Trigger
from ..first_bytes import Seen
from ..matching import DomainMatcher
from ..packet import UDP
from .base import STAGE_INSPECT, Behaviour, Context, Rule
from .quic_initial import initial_sni, is_initial
from .vpn_flows import TupleBox


@dataclass(frozen=True)
class Params:
    """``sni``: domain patterns (``matching.DomainMatcher``: a name matches itself and its subdomains); ``duration``: seconds the
    3-tuple's UDP stays dropped (Zohaib et al.: 180); ``ports``: UDP server ports inspected."""

    sni: tuple[str, ...]
    duration: float = 180.0
    ports: tuple[int, ...] = (443,)

    def __post_init__(self) -> None:
        if not self.sni:
            raise ValueError("sni must not be empty")
        if self.duration < 0:
            raise ValueError("duration must be >= 0")
        if not self.ports:
            raise ValueError("ports must not be empty")


class QuicSni(Behaviour):
    """Drop QUIC to a 3-tuple after an Initial naming a listed host."""

    name = "quic_sni"
    Params = Params
    stage = STAGE_INSPECT

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.box = TupleBox()
        self.names = DomainMatcher(params.sni)

    def queue_rules(self) -> list[Rule]:
        """UDP to and from the ports (the 3-tuple's packets both ways while it is blocked)."""
        out = []
        for p in self.params.ports:
            out += [Rule("filter", ("-p", "udp", "--dport", str(p))), Rule("filter", ("-p", "udp", "--sport", str(p)))]
        return out

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Drop blocked 3-tuples; inspect client Initials."""
        pkt = seen.pkt
        if pkt.proto != UDP:
            return []
        left = self.box.remaining(pkt, now)
        if left is not None:
            return [Drop(), Log("quic_residual_drop", {"remaining": round(left, 3)})]
        if pkt.dport not in self.params.ports or not is_initial(pkt.payload):
            return []
        sni = initial_sni(pkt.payload)
        if self.names.match(sni) is None:
            return []
        self.box.add(UDP, pkt.src, pkt.dst, pkt.dport, now + self.params.duration)
        return [Drop(), Trigger(pkt.src, pkt.dst, pkt.dport, "quic_sni"),
                Log("quic_sni_block", {"sni": sni, "duration": self.params.duration})]
