"""Build the packets the censor injects (scapy), with a configurable fingerprint.

Injected packets carry the fingerprint of the device that sends them: IP TTL
(or a copy of the triggering packet's), IP-ID and TCP window. Fingerprints
are how measurements tell injectors apart (Weaver, Sommer & Paxson, NDSS 2009;
"Triplet Censors", FOCI 2020), so scenarios set them deliberately. Defaults
follow LAB-NOTES: TTL 64, window 8192.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.packet import Raw

from .packet import Packet


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """IP TTL (or "copy"), IP-ID (or "random"; IPv4 only) and TCP window of injected packets."""

    ttl: int | Literal["copy"] = 64
    ip_id: int | Literal["random"] = "random"
    window: int = 8192

    def ttl_for(self, trigger: Packet) -> int:
        """The TTL to use when answering ``trigger``."""
        return trigger.ttl if self.ttl == "copy" else int(self.ttl)

    def ip_id_for(self, rng: random.Random) -> int:
        """The IP-ID to use for the next packet."""
        return rng.randrange(1, 0x10000) if self.ip_id == "random" else int(self.ip_id)


def _ip(src: str, dst: str, ttl: int, ip_id: int) -> IP | IPv6:
    if ":" in src:
        return IPv6(src=src, dst=dst, hlim=ttl)
    return IP(src=src, dst=dst, ttl=ttl, id=ip_id)


def tcp_packet(
    src: str, dst: str, sport: int, dport: int, *, seq: int, ack: int, flags: str,
    ttl: int, ip_id: int, window: int, payload: bytes = b"",
) -> bytes:
    """A complete IPv4/IPv6 TCP packet (checksums filled in)."""
    layer = _ip(src, dst, ttl, ip_id) / TCP(
        sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags, window=window
    )
    if payload:
        layer = layer / Raw(payload)
    return bytes(layer)


def udp_packet(src: str, dst: str, sport: int, dport: int, *, ttl: int, ip_id: int, payload: bytes) -> bytes:
    """A complete IPv4/IPv6 UDP datagram."""
    return bytes(_ip(src, dst, ttl, ip_id) / UDP(sport=sport, dport=dport) / Raw(payload))


def rst_to_server(trigger: Packet, fp: Fingerprint, rng: random.Random) -> bytes:
    """A RST that the server accepts: spoofed from the client, seq = the trigger's seq.

    Linux follows RFC 5961: a RST is honoured only when its sequence number equals
    rcv_nxt, which for the server is the triggering segment's seq (the segment
    itself is dropped, so the server never advanced past it).
    """
    return tcp_packet(
        trigger.src, trigger.dst, trigger.sport, trigger.dport,
        seq=trigger.seq, ack=trigger.ack, flags="RA",
        ttl=fp.ttl_for(trigger), ip_id=fp.ip_id_for(rng), window=fp.window,
    )


def rst_to_client(trigger: Packet, fp: Fingerprint, rng: random.Random) -> bytes:
    """A RST that the client accepts: spoofed from the server, seq = the trigger's ack (client's rcv_nxt)."""
    return tcp_packet(
        trigger.dst, trigger.src, trigger.dport, trigger.sport,
        seq=trigger.ack, ack=trigger.seq + len(trigger.payload), flags="RA",
        ttl=fp.ttl_for(trigger), ip_id=fp.ip_id_for(rng), window=fp.window,
    )


def data_to_client(
    trigger: Packet, body: bytes, fp: Fingerprint, rng: random.Random, *, segment: int = 1200, fin: bool = True
) -> list[bytes]:
    """``body`` as in-order server-to-client segments answering ``trigger``.

    The first byte sits at the trigger's ack (what the client expects next);
    every segment acknowledges the whole triggering request. The last one
    carries FIN when ``fin`` is set, so the client reads EOF after the page.
    """
    out = []
    ack = trigger.seq + len(trigger.payload)
    chunks = [body[i:i + segment] for i in range(0, len(body), segment)] or [b""]
    seq = trigger.ack
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        out.append(tcp_packet(
            trigger.dst, trigger.src, trigger.dport, trigger.sport,
            seq=seq, ack=ack, flags="FPA" if (last and fin) else "PA",
            ttl=fp.ttl_for(trigger), ip_id=fp.ip_id_for(rng), window=fp.window, payload=chunk,
        ))
        seq += len(chunk)
    return out


ICMP_CODES = {  # name -> (ICMPv4 type 3 code, ICMPv6 type 1 code)
    "net-unreachable": (0, 0),
    "host-unreachable": (1, 3),
    "port-unreachable": (3, 4),
    "admin-prohibited": (13, 1),
}


def icmp_unreachable(trigger: Packet, router: str, kind: str, *, ttl: int, ip_id: int) -> bytes:
    """An ICMP(v6) destination-unreachable from ``router`` quoting the start of ``trigger``."""
    code4, code6 = ICMP_CODES[kind]
    if trigger.version == 6:
        return bytes(IPv6(src=router, dst=trigger.src, hlim=ttl) / ICMPv6DestUnreach(code=code6)
                     / Raw(trigger.raw[:1184]))
    return bytes(IP(src=router, dst=trigger.src, ttl=ttl, id=ip_id) / ICMP(type=3, code=code4)
                 / Raw(trigger.raw[:548]))
