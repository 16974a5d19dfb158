"""A bounds-checked byte reader shared by the VPN codecs, and their error base.

Every parser in the VPN codecs (``openvpn``, ``wireguard``, ``ikev2``,
``pptp``, ``l2tp``, ``sstp``, ``ssh``, ``tor``, ``socks``, ``shadowsocks``)
raises exactly one exception type on malformed input, a subclass of
``WireError`` named after the protocol (``OpenVPNWireError`` …). Reading past
the end through ``Reader`` raises that subclass too, so a parser cannot crash
with ``IndexError``/``struct.error`` on arbitrary bytes.
"""

from __future__ import annotations

import struct


class WireError(ValueError):
    """Bytes that do not parse as the protocol message expected."""


class Reader:
    """Sequential big-endian reads over ``data``; short data raises ``error``."""

    __slots__ = ("data", "pos", "error")

    def __init__(self, data: bytes, error: type[WireError] = WireError) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.error = error

    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"truncated: wanted {n} bytes at offset {self.pos}, have {self.remaining()}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        """Everything not yet read."""
        return self.take(self.remaining())

    def u8(self) -> int:
        """One unsigned byte."""
        return self.take(1)[0]

    def u16(self) -> int:
        """Big-endian unsigned 16-bit."""
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        """Big-endian unsigned 32-bit."""
        return struct.unpack("!I", self.take(4))[0]

    def u64(self) -> int:
        """Big-endian unsigned 64-bit."""
        return struct.unpack("!Q", self.take(8))[0]
