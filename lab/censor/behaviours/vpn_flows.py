"""Flow bookkeeping shared by the VPN behaviours: who opened a flow, and blocked flows/3-tuples.

A flow is keyed by its client-side 4-tuple (the side whose packet the censor saw
first); ``Flows.side`` tells for any packet whether it goes client -> server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..packet import Packet

MAX_FLOWS = 65536


@dataclass
class FlowState:
    """What one behaviour remembers about one flow."""

    opened: float
    client_ops: list[int] = field(default_factory=list)
    server_ops: list[int] = field(default_factory=list)
    blocked: bool = False
    decided: bool = False
    first_len: int = 0  # payload length of the client's first packet


class Flows:
    """Flows by client-side key, with a cap (oldest forgotten first)."""

    def __init__(self) -> None:
        self.flows: dict[tuple[int, str, int, str, int], FlowState] = {}

    def lookup(self, pkt: Packet, now: float, *, create: bool = True) -> tuple[FlowState | None, bool]:
        """(state, from_client) for ``pkt``; a packet of an unknown flow opens it as the client's."""
        fwd = (pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        rev = (pkt.proto, pkt.dst, pkt.dport, pkt.src, pkt.sport)
        if fwd in self.flows:
            return self.flows[fwd], True
        if rev in self.flows:
            return self.flows[rev], False
        if not create:
            return None, True
        if len(self.flows) >= MAX_FLOWS:
            for k in list(self.flows)[: MAX_FLOWS // 4]:
                del self.flows[k]
        st = self.flows[fwd] = FlowState(opened=now)
        return st, True


class TupleBox:
    """Blocked (proto, client, server, server port) 3-tuples (+ protocol) until a deadline."""

    def __init__(self) -> None:
        self.until: dict[tuple[int, str, str, int], float] = {}

    def add(self, proto: int, client: str, server: str, port: int, until: float) -> None:
        """Block the 3-tuple until ``until`` (monotonic seconds)."""
        self.until[(proto, client, server, port)] = until

    def remaining(self, pkt: Packet, now: float) -> float | None:
        """Seconds left for the 3-tuple ``pkt`` belongs to (either direction), None when not blocked."""
        for key in ((pkt.proto, pkt.src, pkt.dst, pkt.dport), (pkt.proto, pkt.dst, pkt.src, pkt.sport)):
            end = self.until.get(key)
            if end is not None:
                if now < end:
                    return end - now
                del self.until[key]
        return None
