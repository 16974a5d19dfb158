"""SSTP codec (MS-SSTP s2.2): the HTTPS call setup request and SSTP control packets.

The client opens TLS and sends ``SSTP_DUPLEX_POST
/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/`` with an all-ones
Content-Length; the server answers ``HTTP/1.1 200`` and the connection
becomes a stream of SSTP packets::

    version (0x10) | reserved 7 bits + C bit | 4 reserved bits + 12-bit length
    control: message type (2) | attribute count (2) | attributes
    attribute: reserved (1) | id (1) | 4 reserved bits + 12-bit length | value

``parse_packet`` raises ``SstpWireError`` on malformed input.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from censorscope.probes.wire.vpn_reader import Reader, WireError

SSTP_PATH = "/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/"
VERSION = 0x10
MESSAGE_TYPES = {1: "CALL_CONNECT_REQUEST", 2: "CALL_CONNECT_ACK", 3: "CALL_CONNECT_NAK", 4: "CALL_CONNECTED",
                 5: "CALL_ABORT", 6: "CALL_DISCONNECT", 7: "CALL_DISCONNECT_ACK", 8: "ECHO_REQUEST",
                 9: "ECHO_RESPONSE"}
ATTRIBUTES = {1: "ENCAPSULATED_PROTOCOL_ID", 2: "STATUS_INFO", 3: "CRYPTO_BINDING", 4: "CRYPTO_BINDING_REQ"}
CALL_CONNECT_REQUEST = 1
ENCAPSULATED_PROTOCOL_ID, PROTOCOL_PPP = 1, 1


class SstpWireError(WireError):
    """Bytes that are not a valid SSTP packet."""


def build_request(host: str, correlation_id: str | None = None) -> bytes:
    """The call-setup HTTP request (MS-SSTP s3.2.5.1): SSTP_DUPLEX_POST with an all-ones length."""
    cid = correlation_id or "{" + str(uuid.uuid4()).upper() + "}"
    return (
        f"SSTP_DUPLEX_POST {SSTP_PATH} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Length: 18446744073709551615\r\n"
        f"SSTPCORRELATIONID: {cid}\r\n\r\n"
    ).encode("ascii")


def build_call_connect_request() -> bytes:
    """SSTP_MSG_CALL_CONNECT_REQUEST with ENCAPSULATED_PROTOCOL_ID = PPP (14 bytes)."""
    attr = struct.pack("!BBHH", 0, ENCAPSULATED_PROTOCOL_ID, 6, PROTOCOL_PPP)
    body = struct.pack("!HH", CALL_CONNECT_REQUEST, 1) + attr
    return struct.pack("!BBH", VERSION, 1, 4 + len(body)) + body


def packet_length(header: bytes) -> int:
    """Total length of the packet starting with these 4 bytes."""
    if len(header) < 4:
        raise SstpWireError("short SSTP header")
    if header[0] != VERSION:
        raise SstpWireError(f"SSTP version 0x{header[0]:02x}, expected 0x10")
    n = struct.unpack("!H", header[2:4])[0] & 0x0FFF
    if n < 4:
        raise SstpWireError(f"SSTP length {n} < 4")
    return n


@dataclass(frozen=True)
class Packet:
    """A parsed SSTP packet; ``message_type``/``attributes`` for control packets."""

    control: bool
    message_type: int | None
    attributes: list[tuple[int, bytes]]
    data: bytes

    @property
    def message_name(self) -> str | None:
        """``CALL_CONNECT_ACK`` …"""
        if self.message_type is None:
            return None
        return MESSAGE_TYPES.get(self.message_type, f"unknown({self.message_type})")


def parse_packet(data: bytes) -> Packet:
    """Parse one complete SSTP packet."""
    n = packet_length(data[:4])
    if n != len(data):
        raise SstpWireError(f"length field {n} != {len(data)} bytes")
    control = bool(data[1] & 1)
    if not control:
        return Packet(False, None, [], data[4:])
    r = Reader(data[4:], SstpWireError)
    mtype, count = r.u16(), r.u16()
    attrs = []
    for _ in range(count):
        r.u8()
        aid = r.u8()
        alen = r.u16() & 0x0FFF
        if alen < 4:
            raise SstpWireError(f"attribute length {alen} < 4")
        attrs.append((aid, r.take(alen - 4)))
    if r.remaining():
        raise SstpWireError("trailing bytes after the attributes")
    return Packet(True, mtype, attrs, b"")
