"""Fully-encrypted-traffic blocking by the GFW's exemption rules, with residual 3-tuple blocking.

Wu et al., "How the Great Firewall of China Detects and Blocks Fully
Encrypted Traffic" (USENIX Security 2023): the GFW looks at the first data
packet a client sends on a TCP connection; when none of the exemptions
applies (``censorscope.probes.wire.fet.exemptions``: popcount outside
3.4-4.6 bits/byte, printable prefix, >50 % printable, a run of >20
printable bytes, TLS/HTTP first bytes) it blocks the connection with
probability about 0.26 and then drops the client's packets to that
(client, server, port) 3-tuple for 180 s. Here a blocked connection's later
packets are dropped (both directions) and, for ``residual`` seconds, so is
every packet of a new connection on the 3-tuple (SYNs included).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from censorscope.probes.wire import fet as fet_rules

from ..actions import Action, Drop, Log, Trigger
from ..first_bytes import Seen
from ..packet import TCP
from .base import STAGE_INSPECT, Behaviour, Context, Rule, check_probability, family_of
from .vpn_flows import Flows, TupleBox

#: Wu et al. 2023, s4.1: ~26.3 % of connections with a non-exempt first payload were blocked
DEFAULT_PROBABILITY = fet_rules.BLOCK_PROBABILITY


@dataclass(frozen=True)
class Params:
    """``probability`` per non-exempt connection; ``residual`` seconds of 3-tuple blocking;
    ``addresses``/``ports``: only connections to these servers/ports (empty: all)."""

    probability: float = DEFAULT_PROBABILITY
    residual: float = 180.0
    addresses: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_probability(self.probability)
        if self.residual < 0:
            raise ValueError("residual must be >= 0")
        for a in self.addresses:
            ipaddress.ip_address(a)
        for p in self.ports:
            if not 1 <= p <= 65535:
                raise ValueError(f"port {p} outside 1-65535")


class FetBlock(Behaviour):
    """Block connections whose first client payload is non-exempt (with a probability)."""

    name = "fet_block"
    Params = Params
    stage = STAGE_INSPECT

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.flows = Flows()
        self.box = TupleBox()
        self.addresses = frozenset(str(ipaddress.ip_address(a)) for a in params.addresses)

    def queue_rules(self) -> list[Rule]:
        """The first packets of TCP connections (to the servers/ports), retransmissions included."""
        base = ("-p", "tcp", "-m", "connbytes", "--connbytes", "0:40", "--connbytes-dir", "both",
                "--connbytes-mode", "packets")
        ports = [str(p) for p in self.params.ports] or [None]
        out = []
        for a in sorted(self.addresses) or [None]:
            for p in ports:
                for direction in (("-d", "--dport"), ("-s", "--sport")):
                    args = [*base]
                    if a:
                        args += [direction[0], a]
                    if p:
                        args += [direction[1], p]
                    out.append(Rule("filter", tuple(args), family_of(a) if a else None))
        return out

    def _applies(self, server: str, port: int) -> bool:
        return (not self.addresses or server in self.addresses) and (not self.params.ports or port in self.params.ports)

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Residual drops, then the first-payload decision."""
        pkt = seen.pkt
        if pkt.proto != TCP:
            return []
        left = self.box.remaining(pkt, now)
        if left is not None:
            return [Drop(), Log("fet_residual_drop", {"remaining": round(left, 3)})]
        st, from_client = self.flows.lookup(pkt, now, create=pkt.is_syn)
        if st is None:
            return []
        if st.blocked:
            return [Drop(), Log("fet_flow_drop", {})]
        if st.decided or not from_client or not pkt.payload:
            return []
        st.decided = True
        if not self._applies(pkt.dst, pkt.dport):
            return []
        why = fet_rules.exemptions(pkt.payload)
        if why:
            return [Log("fet_exempt", {"exemptions": why})]
        if self.ctx.rng.random() >= self.params.probability:
            return [Log("fet_spared", {"probability": self.params.probability})]
        st.blocked = True
        if self.params.residual > 0:
            self.box.add(TCP, pkt.src, pkt.dst, pkt.dport, now + self.params.residual)
        return [Drop(), Trigger(pkt.src, pkt.dst, pkt.dport, "fet"),
                Log("fet_block", {"payload_len": len(pkt.payload),
                                  "popcount": round(fet_rules.average_popcount(pkt.payload), 3),
                                  "residual": self.params.residual})]
