"""Tor link protocol codec (tor-spec.txt s3-4) and bridge lines.

Cells: before the link protocol is negotiated, and for VERSIONS always, the
circuit id is 2 bytes; from link protocol 4 on it is 4 bytes. Variable-length
cells (VERSIONS = 7 and commands >= 128) carry a 2-byte length; fixed-length
cells carry 509 payload bytes. The responder of a v3+ handshake sends
VERSIONS, CERTS, AUTH_CHALLENGE and NETINFO. Parsers raise ``TorWireError``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass, field

from censorscope.probes.wire.vpn_reader import Reader, WireError

PADDING, NETINFO, VERSIONS, VPADDING, CERTS, AUTH_CHALLENGE, AUTHENTICATE = 0, 8, 7, 128, 129, 130, 131
COMMANDS = {0: "PADDING", 1: "CREATE", 2: "CREATED", 3: "RELAY", 4: "DESTROY", 5: "CREATE_FAST",
            6: "CREATED_FAST", 7: "VERSIONS", 8: "NETINFO", 9: "RELAY_EARLY", 10: "CREATE2", 11: "CREATED2",
            12: "PADDING_NEGOTIATE", 128: "VPADDING", 129: "CERTS", 130: "AUTH_CHALLENGE", 131: "AUTHENTICATE",
            132: "AUTHORIZE"}
CERT_TYPES = {1: "link_x509", 2: "rsa_identity_x509", 3: "rsa_auth_x509", 4: "ed25519_signing",
              5: "ed25519_link", 6: "ed25519_auth", 7: "rsa_ed25519_crosscert"}
PAYLOAD_LEN = 509
OFFERED_VERSIONS = (3, 4, 5)


class TorWireError(WireError):
    """Bytes that are not a valid Tor cell, or a malformed bridge line."""


@dataclass(frozen=True)
class Cell:
    """One cell."""

    circ_id: int
    command: int
    payload: bytes

    @property
    def name(self) -> str:
        """``CERTS`` …"""
        return COMMANDS.get(self.command, f"unknown({self.command})")


def is_variable(command: int) -> bool:
    """VERSIONS and commands >= 128 are variable-length."""
    return command == VERSIONS or command >= 128


def circ_id_len(link_version: int | None) -> int:
    """2 bytes before negotiation and for v1-3; 4 bytes from v4 on."""
    return 4 if link_version and link_version >= 4 else 2


def build_versions(versions: tuple[int, ...] = OFFERED_VERSIONS) -> bytes:
    """The VERSIONS cell (2-byte circuit id 0)."""
    payload = b"".join(struct.pack("!H", v) for v in versions)
    return struct.pack("!HBH", 0, VERSIONS, len(payload)) + payload


def build_netinfo(link_version: int, peer_ip: str) -> bytes:
    """A client NETINFO cell: timestamp 0 (clients send 0), the peer's address, no own addresses."""
    ip = ipaddress.ip_address(peer_ip)
    atype = 4 if ip.version == 4 else 6
    payload = struct.pack("!IBB", 0, atype, len(ip.packed)) + ip.packed + b"\x00"
    payload += b"\x00" * (PAYLOAD_LEN - len(payload))
    cid = b"\x00" * circ_id_len(link_version)
    return cid + bytes([NETINFO]) + payload


def parse_cell(buf: bytes, link_version: int | None) -> tuple[Cell | None, int]:
    """The first complete cell of ``buf`` and its length, or (None, 0) if more bytes are needed.

    A VERSIONS cell always has a 2-byte circuit id; ``link_version`` sets the
    width for the others (None: not negotiated yet; only VERSIONS is valid).
    """
    if link_version is None:
        if len(buf) < 3:
            return None, 0
        if buf[2] != VERSIONS:
            raise TorWireError(f"first cell is {COMMANDS.get(buf[2], buf[2])}, expected VERSIONS")
        width = 2
    else:
        width = circ_id_len(link_version)
    if len(buf) < width + 1:
        return None, 0
    command = buf[width]
    if is_variable(command):
        if len(buf) < width + 3:
            return None, 0
        (n,) = struct.unpack("!H", buf[width + 1 : width + 3])
        start, total = width + 3, width + 3 + n
    else:
        start, total = width + 1, width + 1 + PAYLOAD_LEN
    if len(buf) < total:
        return None, 0
    return Cell(int.from_bytes(buf[:width], "big"), command, buf[start:total]), total


def parse_cells(buf: bytes, link_version: int | None) -> tuple[list[Cell], bytes]:
    """Split a stream into complete cells; return (cells, leftover).

    After a VERSIONS cell the circuit id width follows the version negotiated
    with ``OFFERED_VERSIONS``.
    """
    out = []
    while True:
        cell, n = parse_cell(buf, link_version)
        if cell is None:
            return out, buf
        out.append(cell)
        buf = buf[n:]
        if cell.command == VERSIONS and link_version is None:
            link_version = negotiate(OFFERED_VERSIONS, parse_versions(cell.payload))
            if link_version is None:
                raise TorWireError("no common link protocol version")


def parse_versions(payload: bytes) -> list[int]:
    """Link protocol versions of a VERSIONS payload."""
    if len(payload) % 2:
        raise TorWireError("VERSIONS payload of odd length")
    return [v for (v,) in struct.iter_unpack("!H", payload)]


def negotiate(ours: tuple[int, ...], theirs: list[int]) -> int | None:
    """Highest version both sides support (None: no overlap)."""
    common = set(ours) & set(theirs)
    return max(common) if common else None


def parse_certs(payload: bytes) -> list[tuple[int, bytes]]:
    """(cert type, body) of each certificate in a CERTS payload."""
    r = Reader(payload, TorWireError)
    return [(r.u8(), r.take(r.u16())) for _ in range(r.u8())]


@dataclass(frozen=True)
class AuthChallenge:
    """An AUTH_CHALLENGE payload."""

    challenge: bytes
    methods: list[int]


def parse_auth_challenge(payload: bytes) -> AuthChallenge:
    """32-byte challenge and the authentication methods."""
    r = Reader(payload, TorWireError)
    challenge = r.take(32)
    return AuthChallenge(challenge, [r.u16() for _ in range(r.u16())])


@dataclass(frozen=True)
class NetInfo:
    """A NETINFO payload: the sender's clock and the addresses it sees."""

    timestamp: int
    other_address: str | None
    my_addresses: list[str]


def _address(r: Reader) -> str | None:
    atype, n = r.u8(), r.u8()
    raw = r.take(n)
    if atype == 4 and n == 4:
        return str(ipaddress.IPv4Address(raw))
    if atype == 6 and n == 16:
        return str(ipaddress.IPv6Address(raw))
    return None


def parse_netinfo(payload: bytes) -> NetInfo:
    """Timestamp, the address the sender sees us at, and its own addresses."""
    r = Reader(payload, TorWireError)
    ts = r.u32()
    other = _address(r)
    mine = [a for a in (_address(r) for _ in range(r.u8())) if a]
    return NetInfo(ts, other, mine)


def rsa_identity_fingerprint(cert_der: bytes) -> str:
    """The relay fingerprint: SHA-1 of the DER (PKCS#1) RSA identity key, upper-case hex."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        key = x509.load_der_x509_certificate(cert_der).public_key()
        der = key.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    except (ValueError, TypeError) as exc:
        raise TorWireError(f"bad RSA identity certificate: {exc}") from None
    return hashlib.sha1(der).hexdigest().upper()


# --- bridge lines -----------------------------------------------------------

_FP_RE = re.compile(r"^(\$)?[0-9A-Fa-f]{40}$")


@dataclass(frozen=True)
class BridgeLine:
    """``[transport] IP:PORT [FINGERPRINT] [key=value ...]``."""

    transport: str | None
    host: str
    port: int
    fingerprint: str | None
    args: dict[str, str] = field(default_factory=dict)


def parse_bridge_line(line: str) -> BridgeLine:
    """Parse a torrc/Tor Browser bridge line (a leading ``Bridge`` is ignored)."""
    words = line.strip().split()
    if words and words[0].lower() == "bridge":
        words = words[1:]
    if not words:
        raise TorWireError("empty bridge line")
    transport = None
    if not (words[0][0].isdigit() or words[0].startswith("[")):
        transport = words.pop(0)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", transport):
            raise TorWireError(f"bad transport name {transport!r}")
    if not words:
        raise TorWireError("bridge line without an address")
    addr = words.pop(0)
    host, sep, port_s = addr.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise TorWireError(f"bad bridge address {addr!r}") from None
    if not sep or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise TorWireError(f"bad bridge port in {addr!r}")
    fp = None
    if words and _FP_RE.match(words[0]):
        fp = words.pop(0).lstrip("$").upper()
    args = {}
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise TorWireError(f"bad bridge argument {w!r}")
        args[k] = v
    return BridgeLine(transport, host, int(port_s), fp, args)


def socks_args(args: dict[str, str]) -> tuple[str, str]:
    """Pluggable-transport arguments packed into SOCKS5 username/password (pt-spec s3.5)."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace(";", "\\;").replace("=", "\\=")

    text = ";".join(f"{esc(k)}={esc(v)}" for k, v in args.items())
    return (text[:255], text[255:] or "\x00")
