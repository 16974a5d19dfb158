"""L2TPv2 control message codec (RFC 2661 s3-4).

Build an SCCRQ with the mandatory AVPs, parse any control message into its
header and AVPs (SCCRP, StopCCN, ZLB). ``parse_message`` raises
``L2tpWireError`` on malformed input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from censorscope.probes.wire.vpn_reader import Reader, WireError

# header flag bits (RFC 2661 s3.1)
T_BIT, L_BIT, S_BIT, O_BIT, P_BIT = 0x8000, 0x4000, 0x0800, 0x0200, 0x0100
VERSION_MASK = 0x000F
CONTROL_FLAGS = T_BIT | L_BIT | S_BIT | 2
# AVP attribute types (RFC 2661 s4.4)
AVP_MESSAGE_TYPE, AVP_RESULT_CODE, AVP_PROTOCOL_VERSION = 0, 1, 2
AVP_FRAMING_CAPS, AVP_BEARER_CAPS, AVP_FIRMWARE, AVP_HOST_NAME, AVP_VENDOR_NAME = 3, 4, 6, 7, 8
AVP_ASSIGNED_TUNNEL_ID, AVP_RECEIVE_WINDOW = 9, 10
AVP_M_BIT, AVP_H_BIT = 0x8000, 0x4000
MESSAGE_TYPES = {1: "SCCRQ", 2: "SCCRP", 3: "SCCCN", 4: "StopCCN", 6: "HELLO", 7: "OCRQ", 8: "OCRP",
                 9: "OCCN", 10: "ICRQ", 11: "ICRP", 12: "ICCN", 14: "CDN", 15: "WEN", 16: "SLI"}
AVP_NAMES = {0: "message_type", 1: "result_code", 2: "protocol_version", 3: "framing_capabilities",
             4: "bearer_capabilities", 5: "tie_breaker", 6: "firmware_revision", 7: "host_name",
             8: "vendor_name", 9: "assigned_tunnel_id", 10: "receive_window_size", 11: "challenge",
             13: "challenge_response"}


class L2tpWireError(WireError):
    """Bytes that are not a valid L2TPv2 control message."""


def avp(attr: int, value: bytes, mandatory: bool = True, vendor: int = 0) -> bytes:
    """One AVP (not hidden)."""
    n = 6 + len(value)
    if n > 1023:
        raise L2tpWireError("AVP too long")
    return struct.pack("!HHH", (AVP_M_BIT if mandatory else 0) | n, vendor, attr) + value


def build_control(tunnel_id: int, session_id: int, ns: int, nr: int, avps: bytes) -> bytes:
    """A control message with length and sequence numbers."""
    return struct.pack("!HHHHHH", CONTROL_FLAGS, 12 + len(avps), tunnel_id, session_id, ns, nr) + avps


def build_sccrq(assigned_tunnel_id: int, host_name: str = "censorscope") -> bytes:
    """An SCCRQ to tunnel 0 carrying the mandatory AVPs (RFC 2661 s6.1)."""
    avps = (
        avp(AVP_MESSAGE_TYPE, struct.pack("!H", 1))
        + avp(AVP_PROTOCOL_VERSION, b"\x01\x00")
        + avp(AVP_HOST_NAME, host_name.encode("ascii"))
        + avp(AVP_FRAMING_CAPS, struct.pack("!I", 3))
        + avp(AVP_ASSIGNED_TUNNEL_ID, struct.pack("!H", assigned_tunnel_id))
        + avp(AVP_BEARER_CAPS, struct.pack("!I", 0), mandatory=False)
        + avp(AVP_RECEIVE_WINDOW, struct.pack("!H", 4), mandatory=False)
        + avp(AVP_VENDOR_NAME, b"censorscope", mandatory=False)
    )
    return build_control(0, 0, 0, 0, avps)


def build_stopccn(peer_tunnel_id: int, our_tunnel_id: int, ns: int, nr: int) -> bytes:
    """StopCCN, result 1 (general request to clear control connection), RFC 2661 s6.4."""
    avps = (
        avp(AVP_MESSAGE_TYPE, struct.pack("!H", 4))
        + avp(AVP_ASSIGNED_TUNNEL_ID, struct.pack("!H", our_tunnel_id))
        + avp(AVP_RESULT_CODE, struct.pack("!H", 1))
    )
    return build_control(peer_tunnel_id, 0, ns, nr, avps)


@dataclass(frozen=True)
class Avp:
    """One parsed AVP."""

    mandatory: bool
    hidden: bool
    vendor: int
    attr: int
    value: bytes


@dataclass(frozen=True)
class ControlMessage:
    """A parsed control message (``avps`` empty for a ZLB acknowledgement)."""

    tunnel_id: int
    session_id: int
    ns: int
    nr: int
    avps: list[Avp]

    def first(self, attr: int) -> bytes | None:
        """Value of the first IETF AVP of type ``attr``."""
        for a in self.avps:
            if a.vendor == 0 and a.attr == attr and not a.hidden:
                return a.value
        return None

    @property
    def message_type(self) -> str | None:
        """``SCCRP``, ``StopCCN``, … or None for a ZLB."""
        v = self.first(AVP_MESSAGE_TYPE)
        if v is None or len(v) != 2:
            return None
        n = struct.unpack("!H", v)[0]
        return MESSAGE_TYPES.get(n, f"type{n}")

    def summary(self) -> dict:
        """A JSON-friendly view of the AVPs (names, decoded where simple)."""
        out: dict = {}
        for a in self.avps:
            name = AVP_NAMES.get(a.attr, f"attr{a.attr}") if a.vendor == 0 else f"vendor{a.vendor}_{a.attr}"
            if a.hidden:
                val: object = {"hidden": a.value.hex()}
            elif a.attr in (7, 8) and a.vendor == 0:
                val = a.value.decode("latin-1")
            elif a.attr == 2 and len(a.value) == 2:
                val = f"{a.value[0]}.{a.value[1]}"
            elif len(a.value) in (2, 4) and a.attr != 1:
                val = int.from_bytes(a.value, "big")
            elif a.attr == 1 and len(a.value) >= 2:
                val = {"result": int.from_bytes(a.value[:2], "big"),
                       "error": int.from_bytes(a.value[2:4], "big") if len(a.value) >= 4 else None,
                       "message": a.value[4:].decode("latin-1")}
            else:
                val = a.value.hex()
            out[name] = val
        return out


def parse_message(data: bytes) -> ControlMessage:
    """Parse one L2TPv2 control message."""
    r = Reader(data, L2tpWireError)
    flags = r.u16()
    if flags & VERSION_MASK != 2:
        raise L2tpWireError(f"not L2TPv2 (version {flags & VERSION_MASK})")
    if not flags & T_BIT:
        raise L2tpWireError("data message, not control")
    if not flags & L_BIT or not flags & S_BIT:
        raise L2tpWireError("control message without length or sequence fields")
    length = r.u16()
    if length != len(data):
        raise L2tpWireError(f"length field {length} != {len(data)} bytes")
    tunnel, session, ns, nr = r.u16(), r.u16(), r.u16(), r.u16()
    if flags & O_BIT:
        r.take(r.u16())
    avps = []
    while r.remaining():
        head = r.u16()
        n = head & 0x03FF
        if n < 6:
            raise L2tpWireError(f"AVP length {n} < 6")
        vendor, attr = r.u16(), r.u16()
        avps.append(Avp(bool(head & AVP_M_BIT), bool(head & AVP_H_BIT), vendor, attr, r.take(n - 6)))
    return ControlMessage(tunnel, session, ns, nr, avps)
