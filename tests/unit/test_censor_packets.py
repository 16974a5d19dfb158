"""Hand-built packets for the censor's unit tests (scapy builds; the censor parses bytes)."""

from __future__ import annotations

import ssl

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

CLIENT, SERVER = "198.51.100.2", "203.0.113.2"
CLIENT6, SERVER6 = "2001:db8:1::2", "2001:db8:3::2"


def client_hello(sni: str | None) -> bytes:
    """A real ClientHello record from Python's ssl (with the SNI extension when ``sni`` is given)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tcp(payload: bytes = b"", *, flags: str = "PA", seq: int = 1000, ack: int = 5000, sport: int = 40000,
        dport: int = 443, src: str = CLIENT, dst: str = SERVER, ttl: int = 64) -> bytes:
    """A client-to-server TCP segment."""
    ip = IPv6(src=src, dst=dst, hlim=ttl) if ":" in src else IP(src=src, dst=dst, ttl=ttl, id=77)
    layer = ip / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=501)
    return bytes(layer / Raw(payload)) if payload else bytes(layer)


def udp(payload: bytes, *, sport: int = 53000, dport: int = 53, src: str = CLIENT, dst: str = SERVER,
        ttl: int = 64) -> bytes:
    """A client-to-server UDP datagram."""
    ip = IPv6(src=src, dst=dst, hlim=ttl) if ":" in src else IP(src=src, dst=dst, ttl=ttl)
    return bytes(ip / UDP(sport=sport, dport=dport) / Raw(payload))


def http_get(path: str, host: str = "www.example.org") -> bytes:
    """A minimal HTTP/1.1 GET request."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n".encode()
