"""Port blocking of VPN protocols: IKE (UDP 500/4500), PPTP (TCP 1723, GRE), L2TP (UDP 1701), ...

The crudest VPN blocking there is: every packet to the protocol's well-known
ports is dropped (TCP: the SYN, so ``connect`` times out), on every address.
``protocols`` picks presets; ``ports`` adds ``"udp/PORT"``/``"tcp/PORT"`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..actions import Action, Drop, Log
from ..first_bytes import Seen
from ..packet import TCP, UDP
from .base import STAGE_ADDRESS, Behaviour, Context, Rule

PRESETS: dict[str, tuple[str, ...]] = {
    "ikev2": ("udp/500", "udp/4500"),
    "pptp": ("tcp/1723",),
    "l2tp": ("udp/1701",),
    "openvpn": ("udp/1194", "tcp/1194"),
    "wireguard": ("udp/51820",),
    "sstp": ("tcp/443",),
    "ssh": ("tcp/22",),
}


def _parse(entry: str) -> tuple[str, int]:
    proto, _, port = entry.partition("/")
    if proto not in ("udp", "tcp") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {entry!r}: use \"udp/PORT\" or \"tcp/PORT\"")
    return proto, int(port)


@dataclass(frozen=True)
class Params:
    """``protocols``: presets (ikev2, pptp, l2tp, openvpn, wireguard, sstp, ssh); ``ports``: extra
    ``"udp/N"``/``"tcp/N"``; ``addresses``: only to these servers (empty: every address)."""

    protocols: tuple[Literal["ikev2", "pptp", "l2tp", "openvpn", "wireguard", "sstp", "ssh"], ...] = ()
    ports: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.protocols and not self.ports:
            raise ValueError("give protocols or ports")
        for p in self.ports:
            _parse(p)


class PortBlock(Behaviour):
    """Drop packets to listed (transport, port)s."""

    name = "port_block"
    Params = Params
    stage = STAGE_ADDRESS

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        entries = [e for p in params.protocols for e in PRESETS[p]] + list(params.ports)
        self.blocked = frozenset(_parse(e) for e in entries)
        self.addresses = frozenset(params.addresses)

    def queue_rules(self) -> list[Rule]:
        """Packets to the ports (TCP: SYNs)."""
        out = []
        for proto, port in sorted(self.blocked):
            extra = ("--syn",) if proto == "tcp" else ()
            for a in sorted(self.addresses) or [None]:
                dst = ("-d", a) if a else ()
                out.append(Rule("filter", (*dst, "-p", proto, "--dport", str(port), *extra),
                                (6 if ":" in a else 4) if a else None))
        return out

    def matches(self, proto: int, dst: str, dport: int) -> bool:
        """Is a packet to ``dst:dport`` over ``proto`` blocked?"""
        name = "udp" if proto == UDP else "tcp" if proto == TCP else None
        if name is None or (name, dport) not in self.blocked:
            return False
        return not self.addresses or dst in self.addresses

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Drop matching packets (TCP: connection attempts)."""
        pkt = seen.pkt
        if not self.matches(pkt.proto, pkt.dst, pkt.dport) or (pkt.is_tcp and not pkt.is_syn):
            return []
        return [Drop(), Log("port_drop", {"port": f"{'udp' if pkt.is_udp else 'tcp'}/{pkt.dport}"})]
