"""SOCKS5 (RFC 1928, RFC 1929) and HTTP CONNECT (RFC 9110 s9.3.6) client codecs.

Pure functions. Parsers raise ``SocksWireError`` (SOCKS) or
``HttpConnectWireError`` (HTTP CONNECT) on malformed input.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from censorscope.probes.wire.vpn_reader import Reader, WireError

VERSION = 5
METHOD_NO_AUTH = 0x00
METHOD_USERPASS = 0x02
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 1
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4
#: RFC 1928 s6 reply codes
REPLIES = {
    0: "succeeded", 1: "general SOCKS server failure", 2: "connection not allowed by ruleset",
    3: "network unreachable", 4: "host unreachable", 5: "connection refused", 6: "TTL expired",
    7: "command not supported", 8: "address type not supported",
}


class SocksWireError(WireError):
    """Bytes that are not a valid SOCKS5 server message."""


class HttpConnectWireError(WireError):
    """Bytes that are not a valid HTTP response head."""


def build_greeting(methods: list[int]) -> bytes:
    """Client greeting: version, method count, methods."""
    return bytes([VERSION, len(methods), *methods])


def parse_method_choice(data: bytes) -> int:
    """The method the server chose (2-byte reply)."""
    r = Reader(data, SocksWireError)
    if r.u8() != VERSION:
        raise SocksWireError("not a SOCKS5 method reply")
    return r.u8()


def build_userpass(user: str, password: str) -> bytes:
    """RFC 1929 username/password request."""
    u, p = user.encode(), password.encode()
    if len(u) > 255 or len(p) > 255:
        raise SocksWireError("username or password longer than 255 bytes")
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def parse_userpass_reply(data: bytes) -> int:
    """RFC 1929 status (0 = success)."""
    r = Reader(data, SocksWireError)
    if r.u8() != 1:
        raise SocksWireError("bad username/password reply version")
    return r.u8()


def encode_address(host: str, port: int) -> bytes:
    """ATYP + address + port for ``host`` (IP literal or domain name)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        if not 0 < len(name) < 256:
            raise SocksWireError(f"bad domain name {host!r}") from None
        return bytes([ATYP_DOMAIN, len(name)]) + name + struct.pack("!H", port)
    atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
    return bytes([atyp]) + ip.packed + struct.pack("!H", port)


def build_connect(host: str, port: int) -> bytes:
    """CONNECT request for ``host:port``."""
    return bytes([VERSION, CMD_CONNECT, 0]) + encode_address(host, port)


def reply_length(head: bytes) -> int:
    """Total length of a CONNECT reply given its first 5 bytes."""
    if len(head) < 5:
        raise SocksWireError("short reply")
    atyp = head[3]
    if atyp == ATYP_IPV4:
        return 10
    if atyp == ATYP_IPV6:
        return 22
    if atyp == ATYP_DOMAIN:
        return 7 + head[4]
    raise SocksWireError(f"unknown address type {atyp}")


@dataclass(frozen=True)
class ConnectReply:
    """A SOCKS5 CONNECT reply."""

    reply: int
    bound_host: str
    bound_port: int

    @property
    def reply_text(self) -> str:
        """RFC 1928 meaning of the reply code."""
        return REPLIES.get(self.reply, f"unassigned ({self.reply})")


def parse_connect_reply(data: bytes) -> ConnectReply:
    """Parse a complete CONNECT reply."""
    r = Reader(data, SocksWireError)
    if r.u8() != VERSION:
        raise SocksWireError("not a SOCKS5 reply")
    code = r.u8()
    r.u8()
    atyp = r.u8()
    if atyp == ATYP_IPV4:
        host = str(ipaddress.IPv4Address(r.take(4)))
    elif atyp == ATYP_IPV6:
        host = str(ipaddress.IPv6Address(r.take(16)))
    elif atyp == ATYP_DOMAIN:
        host = r.take(r.u8()).decode("ascii", "replace")
    else:
        raise SocksWireError(f"unknown address type {atyp}")
    port = r.u16()
    if r.remaining():
        raise SocksWireError("trailing bytes after reply")
    return ConnectReply(code, host, port)


def build_http_connect(authority: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    """``CONNECT host:port HTTP/1.1`` with a Host header."""
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class HttpResponseHead:
    """Status line and headers of an HTTP/1.x response."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]


def parse_http_head(data: bytes) -> HttpResponseHead:
    """Parse a response head (status line and headers, up to the blank line)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise HttpConnectWireError("incomplete response head")
    lines = data[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise HttpConnectWireError(f"bad status line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpConnectWireError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return HttpResponseHead(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers)
