"""Drop WireGuard handshake initiations (message type 1, exactly 148 bytes of UDP payload).

WireGuard has a fixed, unencrypted message header: a type-1 initiation is
always 148 bytes starting ``01 00 00 00``. Censors (e.g. Russia in 2022-2023,
Iran; CENSORSHIP-FACTS.md) drop these by shape on any port; the handshake
never completes and the client retries every 5 s. Only UDP datagrams of that
length are queued (IPv4: ``-m length --length 176``, IPv6: 196).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions import Action, Drop, Log
from ..first_bytes import Seen
from ..packet import Packet
from .base import STAGE_INSPECT, Behaviour, Rule

INITIATION_LEN = 148
INITIATION_HEAD = b"\x01\x00\x00\x00"


@dataclass(frozen=True)
class Params:
    """``ports``: only initiations to these UDP ports (empty: any port)."""

    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for p in self.ports:
            if not 1 <= p <= 65535:
                raise ValueError(f"port {p} outside 1-65535")


def is_initiation(pkt: Packet) -> bool:
    """A UDP datagram carrying a WireGuard handshake initiation."""
    return pkt.is_udp and len(pkt.payload) == INITIATION_LEN and pkt.payload[:4] == INITIATION_HEAD


class WireguardDrop(Behaviour):
    """Drop handshake initiations."""

    name = "wireguard_drop"
    Params = Params
    stage = STAGE_INSPECT

    def queue_rules(self) -> list[Rule]:
        """UDP datagrams of an initiation's length."""
        ports = [("--dport", str(p)) for p in self.params.ports] or [()]
        out = []
        for p in ports:
            out.append(Rule("filter", ("-p", "udp", *p, "-m", "length", "--length", "176"), 4))
            out.append(Rule("filter", ("-p", "udp", *p, "-m", "length", "--length", "196"), 6))
        return out

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Drop initiations."""
        pkt = seen.pkt
        if not is_initiation(pkt) or (self.params.ports and pkt.dport not in self.params.ports):
            return []
        return [Drop(), Log("wireguard_initiation_drop", {"sender_index": pkt.payload[4:8].hex()})]
