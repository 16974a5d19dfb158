"""Send forged packets through one raw socket per address family (IPPROTO_RAW).

With ``IPPROTO_RAW`` the kernel takes our IP header as is (spoofed source, TTL,
IP-ID) and routes the packet from the censor's namespace like a packet the
censor emitted itself; it goes through OUTPUT, not FORWARD, so the censor never
queues its own injections.
"""

from __future__ import annotations

import socket


class RawInjector:
    """Lazily opened raw sockets; ``send`` never raises (a failed injection is logged by the caller)."""

    def __init__(self) -> None:
        self._socks: dict[int, socket.socket] = {}

    def _sock(self, family: int) -> socket.socket:
        s = self._socks.get(family)
        if s is None:
            s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self._socks[family] = s
        return s

    def send(self, raw: bytes, dst: str) -> str | None:
        """Send the IP packet ``raw`` toward ``dst``; returns an error string on failure."""
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        try:
            self._sock(family).sendto(raw, (dst, 0))
        except OSError as e:
            return str(e)
        return None

    def close(self) -> None:
        """Close the sockets."""
        for s in self._socks.values():
            s.close()
        self._socks.clear()
