"""PPTP control connection codec (RFC 2637 s2.1-2.2).

Start-Control-Connection-Request / -Reply. ``parse_sccrp`` raises
``PptpWireError`` on malformed input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from censorscope.probes.wire.vpn_reader import Reader, WireError

MAGIC_COOKIE = 0x1A2B3C4D
MESSAGE_CONTROL = 1
SCCRQ, SCCRP, STOP_CCRQ = 1, 2, 3
PROTOCOL_VERSION = 0x0100
SCCRQ_LENGTH = 156
#: RFC 2637 s2.2 result codes of an SCCRP
RESULT_CODES = {1: "successful channel establishment", 2: "general error", 3: "command channel already exists",
                4: "requester is not authorized", 5: "protocol version not supported"}


class PptpWireError(WireError):
    """Bytes that are not a valid PPTP control message."""


def _fixed(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:63]
    return raw + b"\x00" * (64 - len(raw))


def build_sccrq(hostname: str = "censorscope", vendor: str = "censorscope") -> bytes:
    """A Start-Control-Connection-Request (156 bytes), async+sync framing, analog+digital bearer."""
    return struct.pack(
        "!HHIHHHHIIHH64s64s", SCCRQ_LENGTH, MESSAGE_CONTROL, MAGIC_COOKIE, SCCRQ, 0, PROTOCOL_VERSION, 0,
        3, 3, 0, 0x0100, _fixed(hostname), _fixed(vendor),
    )


@dataclass(frozen=True)
class ControlMessage:
    """A parsed PPTP control message header and, for SCCRP, its fields."""

    length: int
    control_type: int
    protocol_version: int | None = None
    result_code: int | None = None
    error_code: int | None = None
    framing_capabilities: int | None = None
    bearer_capabilities: int | None = None
    maximum_channels: int | None = None
    firmware_revision: int | None = None
    hostname: str | None = None
    vendor: str | None = None

    @property
    def result_text(self) -> str | None:
        """RFC 2637 meaning of the result code."""
        if self.result_code is None:
            return None
        return RESULT_CODES.get(self.result_code, f"unassigned ({self.result_code})")


def message_length(header: bytes) -> int:
    """The length field of a control message (first 2 bytes), validated."""
    if len(header) < 2:
        raise PptpWireError("short header")
    (n,) = struct.unpack("!H", header[:2])
    if n < 12 or n > 4096:
        raise PptpWireError(f"implausible message length {n}")
    return n


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1")


def parse_control(data: bytes) -> ControlMessage:
    """Parse one control message; SCCRP fields are filled in when it is one."""
    r = Reader(data, PptpWireError)
    length = r.u16()
    if length != len(data):
        raise PptpWireError(f"length field {length} != {len(data)} bytes")
    if r.u16() != MESSAGE_CONTROL:
        raise PptpWireError("not a control message")
    if r.u32() != MAGIC_COOKIE:
        raise PptpWireError("bad magic cookie")
    ctype = r.u16()
    r.u16()
    if ctype != SCCRP:
        return ControlMessage(length, ctype)
    if length != SCCRQ_LENGTH:
        raise PptpWireError(f"SCCRP of {length} bytes, expected 156")
    version = r.u16()
    result, error = r.u8(), r.u8()
    framing, bearer = r.u32(), r.u32()
    channels, firmware = r.u16(), r.u16()
    host, vendor = _text(r.take(64)), _text(r.take(64))
    return ControlMessage(length, ctype, version, result, error, framing, bearer, channels, firmware, host, vendor)
