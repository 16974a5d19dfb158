"""Extract the SNI from a TLS ClientHello, saying when the bytes are incomplete.

The censor sees the first bytes of a client's TCP stream, either one segment
(no reassembly) or the contiguous prefix of the stream (reassembly). The parser
answers one of: the server name, "no SNI" (a complete ClientHello without the
extension), "incomplete" (looks like a ClientHello, more bytes needed) or "not
TLS". A ClientHello fragmented over several TLS *records* is treated as
incomplete after the first record (real clients never do it; documented in
docs/censor.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum


class HelloStatus(Enum):
    """Outcome of parsing the start of a stream as a ClientHello."""

    SNI = "sni"
    NO_SNI = "no_sni"
    INCOMPLETE = "incomplete"
    NOT_TLS = "not_tls"


@dataclass(frozen=True, slots=True)
class HelloResult:
    """Parse result; ``sni`` is set (lower case, no trailing dot) when status is SNI."""

    status: HelloStatus
    sni: str | None = None


_NOT_TLS = HelloResult(HelloStatus.NOT_TLS)
_INCOMPLETE = HelloResult(HelloStatus.INCOMPLETE)
_NO_SNI = HelloResult(HelloStatus.NO_SNI)


def looks_like_tls(data: bytes) -> bool:
    """First bytes of a TLS handshake record (content type 22, version 3.x)."""
    return len(data) >= 1 and data[0] == 0x16 and (len(data) < 2 or data[1] == 3)


def parse_client_hello(data: bytes) -> HelloResult:
    """Find the server_name extension in the ClientHello at the start of ``data``."""
    if not data:
        return _INCOMPLETE
    if not looks_like_tls(data):
        return _NOT_TLS
    if len(data) < 9:
        return _INCOMPLETE
    record_len = struct.unpack_from("!H", data, 3)[0]
    if data[5] != 0x01:  # handshake type: client_hello
        return _NOT_TLS
    hs_len = int.from_bytes(data[6:9], "big")
    if hs_len + 4 > record_len:
        # The hello continues in a later record: we do not reassemble records.
        return _INCOMPLETE if len(data) < 5 + record_len else _NO_SNI
    body = data[9:9 + hs_len]
    if len(body) < hs_len:
        return _INCOMPLETE
    try:
        return _extensions(body)
    except (struct.error, IndexError):
        return _NOT_TLS


def _extensions(body: bytes) -> HelloResult:
    off = 2 + 32  # legacy_version, random
    off += 1 + body[off]  # session id
    off += 2 + struct.unpack_from("!H", body, off)[0]  # cipher suites
    off += 1 + body[off]  # compression methods
    if off >= len(body):
        return _NO_SNI
    ext_end = off + 2 + struct.unpack_from("!H", body, off)[0]
    off += 2
    while off + 4 <= min(ext_end, len(body)):
        etype, elen = struct.unpack_from("!HH", body, off)
        off += 4
        if etype == 0:  # server_name
            return _server_name(body[off:off + elen])
        off += elen
    return _NO_SNI


def _server_name(ext: bytes) -> HelloResult:
    off = 2  # server_name_list length
    while off + 3 <= len(ext):
        name_type, name_len = ext[off], struct.unpack_from("!H", ext, off + 1)[0]
        off += 3
        if name_type == 0:
            name = ext[off:off + name_len].decode("ascii", "replace").lower().rstrip(".")
            return HelloResult(HelloStatus.SNI, name)
        off += name_len
    return _NO_SNI
