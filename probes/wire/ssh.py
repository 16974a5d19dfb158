"""SSH transport codec (RFC 4253): identification banner and KEXINIT.

Pure functions, no sockets. ``parse_banner`` and ``parse_kexinit`` raise
``SshWireError`` (and nothing else) on malformed input.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from censorscope.probes.wire.vpn_reader import Reader, WireError

MSG_KEXINIT = 20
#: RFC 4253 s7.1: the ten name-lists of KEXINIT, in order.
KEXINIT_LISTS = (
    "kex_algorithms", "server_host_key_algorithms",
    "encryption_algorithms_client_to_server", "encryption_algorithms_server_to_client",
    "mac_algorithms_client_to_server", "mac_algorithms_server_to_client",
    "compression_algorithms_client_to_server", "compression_algorithms_server_to_client",
    "languages_client_to_server", "languages_server_to_client",
)
#: RFC 4253 s6.1: a packet is at most 35000 bytes; refuse larger lengths early.
MAX_PACKET = 35000


class SshWireError(WireError):
    """Bytes that are not a valid SSH banner or packet."""


@dataclass(frozen=True)
class Banner:
    """``SSH-protoversion-softwareversion SP comments``, plus lines sent before it."""

    proto_version: str
    software_version: str
    comments: str
    raw: str
    preamble: list[str]


def parse_banner(data: bytes) -> tuple[Banner, int]:
    """Parse the server identification from ``data``; return it and the bytes consumed.

    RFC 4253 s4.2 lets a server send other lines first; they are kept in
    ``preamble``. Raises ``SshWireError`` when no complete ``SSH-`` line is
    present or it is malformed.
    """
    pos = 0
    preamble: list[str] = []
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise SshWireError("no complete identification line")
        line = data[pos:end].rstrip(b"\r")
        pos = end + 1
        if line.startswith(b"SSH-"):
            break
        if len(preamble) >= 32 or len(line) > 255:
            raise SshWireError("too many or too long lines before the identification")
        preamble.append(line.decode("utf-8", "replace"))
    if len(line) > 253:
        raise SshWireError("identification line longer than 255 bytes")
    text = line.decode("ascii", "replace")
    ident, _, comments = text.partition(" ")
    parts = ident.split("-", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SshWireError(f"malformed identification {text!r}")
    return Banner(parts[1], parts[2], comments, text, preamble), pos


def build_banner(software: str = "censorscope_0.1") -> bytes:
    """Our identification line."""
    return f"SSH-2.0-{software}\r\n".encode("ascii")


def packet_length(header: bytes) -> int:
    """Total bytes of the packet that starts with these 4 bytes (incl. the length field)."""
    if len(header) < 4:
        raise SshWireError("short packet header")
    (n,) = struct.unpack("!I", header[:4])
    if n < 5 or n > MAX_PACKET:
        raise SshWireError(f"implausible packet length {n}")
    return 4 + n


def unwrap_packet(data: bytes) -> bytes:
    """The payload of one unencrypted binary packet (RFC 4253 s6)."""
    r = Reader(data, SshWireError)
    n = r.u32()
    if n < 5 or n > MAX_PACKET:
        raise SshWireError(f"implausible packet length {n}")
    pad = r.u8()
    if pad < 4 or pad > n - 1:
        raise SshWireError(f"bad padding length {pad}")
    payload = r.take(n - 1 - pad)
    r.take(pad)
    return payload


def wrap_packet(payload: bytes) -> bytes:
    """An unencrypted binary packet: block size 8, at least 4 bytes of padding."""
    pad = 8 - (5 + len(payload)) % 8
    if pad < 4:
        pad += 8
    return struct.pack("!IB", 1 + len(payload) + pad, pad) + payload + os.urandom(pad)


@dataclass(frozen=True)
class KexInit:
    """A parsed SSH_MSG_KEXINIT."""

    cookie: bytes
    lists: dict[str, list[str]]
    first_kex_packet_follows: bool


def parse_kexinit(payload: bytes) -> KexInit:
    """Parse a KEXINIT payload (message number first)."""
    r = Reader(payload, SshWireError)
    if r.u8() != MSG_KEXINIT:
        raise SshWireError("not a KEXINIT message")
    cookie = r.take(16)
    lists: dict[str, list[str]] = {}
    for name in KEXINIT_LISTS:
        raw = r.take(r.u32())
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise SshWireError(f"non-ASCII name-list {name}") from None
        lists[name] = text.split(",") if text else []
    follows = bool(r.u8())
    r.u32()
    return KexInit(cookie, lists, follows)


def build_kexinit(lists: dict[str, list[str]] | None = None) -> bytes:
    """A KEXINIT payload offering common algorithms (what OpenSSH 9 offers first)."""
    offer = {
        "kex_algorithms": ["curve25519-sha256", "ecdh-sha2-nistp256", "diffie-hellman-group14-sha256"],
        "server_host_key_algorithms": ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-256"],
        "encryption_algorithms_client_to_server": ["chacha20-poly1305@openssh.com", "aes128-ctr"],
        "encryption_algorithms_server_to_client": ["chacha20-poly1305@openssh.com", "aes128-ctr"],
        "mac_algorithms_client_to_server": ["hmac-sha2-256"],
        "mac_algorithms_server_to_client": ["hmac-sha2-256"],
        "compression_algorithms_client_to_server": ["none"],
        "compression_algorithms_server_to_client": ["none"],
        "languages_client_to_server": [],
        "languages_server_to_client": [],
    }
    offer.update(lists or {})
    out = bytearray([MSG_KEXINIT]) + os.urandom(16)
    for name in KEXINIT_LISTS:
        text = ",".join(offer[name]).encode("ascii")
        out += struct.pack("!I", len(text)) + text
    out += b"\x00" + b"\x00\x00\x00\x00"
    return bytes(out)
