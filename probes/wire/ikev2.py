"""IKEv2 IKE_SA_INIT codec (RFC 7296; RFC 3948 for the UDP 4500 non-ESP marker).

Builds an IKE_SA_INIT request (SA with common proposals, KE, Nonce,
NAT_DETECTION notifies, optional COOKIE) and parses any IKE message into its
header and payloads (SA proposals/transforms, KE, Nonce, Notify, Vendor ID;
others kept raw). ``KeyExchange`` makes real DH public values for groups 14
(MODP-2048), 19 (ECP-256) and 31 (Curve25519). Parsers raise ``IkeWireError``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import struct
from dataclasses import dataclass, field

from censorscope.probes.wire.vpn_reader import Reader, WireError

IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL = 34, 35, 36, 37
FLAG_INITIATOR, FLAG_VERSION, FLAG_RESPONSE = 0x08, 0x10, 0x20
NON_ESP_MARKER = b"\x00\x00\x00\x00"
# payload types (RFC 7296 s3.2)
PT_NONE, PT_SA, PT_KE, PT_NONCE, PT_NOTIFY, PT_VENDOR = 0, 33, 34, 40, 41, 43
PAYLOAD_NAMES = {33: "SA", 34: "KE", 35: "IDi", 36: "IDr", 37: "CERT", 38: "CERTREQ", 39: "AUTH", 40: "Nonce",
                 41: "Notify", 42: "Delete", 43: "VendorID", 44: "TSi", 45: "TSr", 46: "SK", 47: "CP", 48: "EAP"}
# transform types and ids (RFC 7296 s3.3.2, IANA registry)
ENCR, PRF, INTEG, DH = 1, 2, 3, 4
ENCR_AES_CBC, ENCR_AES_GCM_16 = 12, 20
PRF_HMAC_SHA1, PRF_HMAC_SHA2_256 = 2, 5
AUTH_HMAC_SHA1_96, AUTH_HMAC_SHA2_256_128 = 2, 12
ATTR_KEY_LENGTH = 14
TRANSFORM_NAMES = {
    ENCR: {3: "3DES", 12: "AES_CBC", 13: "AES_CTR", 18: "AES_GCM_8", 19: "AES_GCM_12", 20: "AES_GCM_16",
           28: "CHACHA20_POLY1305"},
    PRF: {2: "HMAC_SHA1", 4: "AES128_XCBC", 5: "HMAC_SHA2_256", 6: "HMAC_SHA2_384", 7: "HMAC_SHA2_512"},
    INTEG: {2: "HMAC_SHA1_96", 5: "AES_XCBC_96", 12: "HMAC_SHA2_256_128", 13: "HMAC_SHA2_384_192",
            14: "HMAC_SHA2_512_256"},
    DH: {2: "MODP_1024", 14: "MODP_2048", 15: "MODP_3072", 19: "ECP_256", 20: "ECP_384", 21: "ECP_521",
         31: "CURVE25519"},
}
TYPE_NAMES = {ENCR: "ENCR", PRF: "PRF", INTEG: "INTEG", DH: "DH", 5: "ESN"}
# notify message types (RFC 7296 s3.10.1)
N_UNSUPPORTED_CRITICAL_PAYLOAD, N_INVALID_SYNTAX, N_NO_PROPOSAL_CHOSEN, N_INVALID_KE_PAYLOAD = 1, 7, 14, 17
N_NAT_DETECTION_SOURCE_IP, N_NAT_DETECTION_DESTINATION_IP, N_COOKIE = 16388, 16389, 16390
NOTIFY_NAMES = {1: "UNSUPPORTED_CRITICAL_PAYLOAD", 4: "INVALID_IKE_SPI", 5: "INVALID_MAJOR_VERSION",
                7: "INVALID_SYNTAX", 9: "INVALID_MESSAGE_ID", 14: "NO_PROPOSAL_CHOSEN", 17: "INVALID_KE_PAYLOAD",
                24: "AUTHENTICATION_FAILED", 16388: "NAT_DETECTION_SOURCE_IP",
                16389: "NAT_DETECTION_DESTINATION_IP", 16390: "COOKIE", 16404: "MULTIPLE_AUTH_SUPPORTED",
                16406: "IKEV2_FRAGMENTATION_SUPPORTED", 16431: "SIGNATURE_HASH_ALGORITHMS",
                16418: "CHILDLESS_IKEV2_SUPPORTED", 16441: "REDIRECT_SUPPORTED"}

#: RFC 3526 s3: the 2048-bit MODP group (group 14), generator 2
MODP_2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD"
    "3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F"
    "24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552"
    "BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF0"
    "6F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)


class IkeWireError(WireError):
    """Bytes that are not a valid IKEv2 message."""


@dataclass(frozen=True)
class Transform:
    """One transform; ``key_length`` from the Key Length attribute, if any."""

    type: int
    id: int
    key_length: int | None = None

    def name(self) -> str:
        """``ENCR_AES_CBC_256`` style."""
        base = TRANSFORM_NAMES.get(self.type, {}).get(self.id, str(self.id))
        return f"{TYPE_NAMES.get(self.type, self.type)}_{base}" + (f"_{self.key_length}" if self.key_length else "")


@dataclass(frozen=True)
class Proposal:
    """One proposal of an SA payload."""

    number: int
    protocol: int
    spi: bytes
    transforms: list[Transform]


@dataclass(frozen=True)
class Notify:
    """A Notify payload."""

    protocol: int
    spi: bytes
    type: int
    data: bytes

    @property
    def name(self) -> str:
        """``COOKIE``, ``INVALID_KE_PAYLOAD`` … or the number."""
        return NOTIFY_NAMES.get(self.type, str(self.type))


@dataclass
class Message:
    """An IKE message: header and payloads in order (type, parsed or raw)."""

    spi_i: bytes
    spi_r: bytes
    version: int
    exchange: int
    flags: int
    message_id: int
    payloads: list[tuple[int, object]] = field(default_factory=list)

    def of(self, ptype: int) -> list[object]:
        """Payload bodies of one type."""
        return [body for t, body in self.payloads if t == ptype]

    @property
    def notifies(self) -> list[Notify]:
        """Every Notify payload."""
        return [n for n in self.of(PT_NOTIFY) if isinstance(n, Notify)]

    def notify(self, ntype: int) -> Notify | None:
        """The first notify of a type."""
        return next((n for n in self.notifies if n.type == ntype), None)


# --- building -------------------------------------------------------------

def _transform(t: Transform, last: bool) -> bytes:
    attrs = struct.pack("!HH", 0x8000 | ATTR_KEY_LENGTH, t.key_length) if t.key_length else b""
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), t.type, 0, t.id) + attrs


def _proposal(p: Proposal, last: bool) -> bytes:
    body = b"".join(_transform(t, i == len(p.transforms) - 1) for i, t in enumerate(p.transforms))
    head = struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(p.spi) + len(body), p.number, p.protocol,
                       len(p.spi), len(p.transforms))
    return head + p.spi + body


def default_proposals(groups: list[int]) -> list[Proposal]:
    """What common initiators (strongSwan, Windows, iOS) offer: AES-CBC + HMAC, and AES-GCM."""
    dh = [Transform(DH, g) for g in groups]
    cbc = [Transform(ENCR, ENCR_AES_CBC, 256), Transform(ENCR, ENCR_AES_CBC, 128),
           Transform(PRF, PRF_HMAC_SHA2_256), Transform(PRF, PRF_HMAC_SHA1),
           Transform(INTEG, AUTH_HMAC_SHA2_256_128), Transform(INTEG, AUTH_HMAC_SHA1_96), *dh]
    gcm = [Transform(ENCR, ENCR_AES_GCM_16, 256), Transform(ENCR, ENCR_AES_GCM_16, 128),
           Transform(PRF, PRF_HMAC_SHA2_256), *dh]
    return [Proposal(1, 1, b"", cbc), Proposal(2, 1, b"", gcm)]


def nat_detection_hash(spi_i: bytes, spi_r: bytes, ip: str, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | port), RFC 7296 s2.23."""
    return hashlib.sha1(spi_i + spi_r + ipaddress.ip_address(ip).packed + struct.pack("!H", port)).digest()


def _chain(payloads: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    out = b""
    for i, (_, body) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else PT_NONE
        out += struct.pack("!BBH", nxt, 0, 4 + len(body)) + body
    return (payloads[0][0] if payloads else PT_NONE), out


def notify_body(ntype: int, data: bytes = b"") -> bytes:
    """A Notify payload body with protocol 0 and no SPI."""
    return struct.pack("!BBH", 0, 0, ntype) + data


def build_sa_init(spi_i: bytes, proposals: list[Proposal], group: int, ke_data: bytes, nonce: bytes,
                  notifies: list[tuple[int, bytes]] | None = None, cookie: bytes | None = None) -> bytes:
    """An IKE_SA_INIT request. A COOKIE notify, when given, comes first (RFC 7296 s2.6)."""
    if len(spi_i) != 8:
        raise IkeWireError("SPIi must be 8 bytes")
    payloads: list[tuple[int, bytes]] = []
    if cookie is not None:
        payloads.append((PT_NOTIFY, notify_body(N_COOKIE, cookie)))
    sa = b"".join(_proposal(p, i == len(proposals) - 1) for i, p in enumerate(proposals))
    payloads += [(PT_SA, sa), (PT_KE, struct.pack("!HH", group, 0) + ke_data), (PT_NONCE, nonce)]
    payloads += [(PT_NOTIFY, notify_body(t, d)) for t, d in notifies or []]
    first, body = _chain(payloads)
    header = spi_i + b"\x00" * 8 + struct.pack("!BBBBII", first, 0x20, IKE_SA_INIT, FLAG_INITIATOR, 0, 28 + len(body))
    return header + body


# --- parsing --------------------------------------------------------------

def _parse_sa(body: bytes) -> list[Proposal]:
    r = Reader(body, IkeWireError)
    out = []
    more = True
    while more:
        if not r.remaining():
            raise IkeWireError("SA payload ends before its last proposal")
        last_flag, _ = r.u8(), r.u8()
        plen = r.u16()
        if plen < 8:
            raise IkeWireError(f"proposal length {plen} < 8")
        pr = Reader(r.take(plen - 4), IkeWireError)
        number, proto, spi_size, n = pr.u8(), pr.u8(), pr.u8(), pr.u8()
        spi = pr.take(spi_size)
        transforms = []
        for _ in range(n):
            tlast, _ = pr.u8(), pr.u8()
            tlen = pr.u16()
            if tlen < 8:
                raise IkeWireError(f"transform length {tlen} < 8")
            tr = Reader(pr.take(tlen - 4), IkeWireError)
            ttype, _, tid = tr.u8(), tr.u8(), tr.u16()
            key_length = None
            while tr.remaining():
                af = tr.u16()
                if af & 0x8000:
                    val = tr.u16()
                    if af & 0x7FFF == ATTR_KEY_LENGTH:
                        key_length = val
                else:
                    tr.take(tr.u16())
            transforms.append(Transform(ttype, tid, key_length))
            if tlast not in (0, 3):
                raise IkeWireError(f"bad transform 'last' field {tlast}")
        out.append(Proposal(number, proto, spi, transforms))
        if last_flag not in (0, 2):
            raise IkeWireError(f"bad proposal 'last' field {last_flag}")
        more = last_flag == 2
    return out


def _parse_notify(body: bytes) -> Notify:
    r = Reader(body, IkeWireError)
    proto, spi_size, ntype = r.u8(), r.u8(), r.u16()
    spi = r.take(spi_size)
    return Notify(proto, spi, ntype, r.rest())


def parse_message(data: bytes) -> Message:
    """Parse one IKE message (without the non-ESP marker)."""
    r = Reader(data, IkeWireError)
    spi_i, spi_r = r.take(8), r.take(8)
    nxt, version, exchange, flags = r.u8(), r.u8(), r.u8(), r.u8()
    msg_id, length = r.u32(), r.u32()
    if version >> 4 != 2:
        raise IkeWireError(f"IKE major version {version >> 4}, expected 2")
    if length != len(data):
        raise IkeWireError(f"length field {length} != {len(data)} bytes")
    msg = Message(spi_i, spi_r, version, exchange, flags, msg_id)
    while nxt != PT_NONE:
        ptype = nxt
        nxt, _crit, plen = r.u8(), r.u8(), r.u16()
        if plen < 4:
            raise IkeWireError(f"payload length {plen} < 4")
        body = r.take(plen - 4)
        parsed: object
        if ptype == PT_SA:
            parsed = _parse_sa(body)
        elif ptype == PT_NOTIFY:
            parsed = _parse_notify(body)
        elif ptype == PT_KE:
            kr = Reader(body, IkeWireError)
            group = kr.u16()
            kr.take(2)  # reserved
            parsed = (group, kr.rest())
        elif ptype == 46:  # SK: encrypted, stops the chain we can read
            parsed = body
            msg.payloads.append((ptype, parsed))
            break
        else:
            parsed = body
        msg.payloads.append((ptype, parsed))
    return msg


def summary(msg: Message) -> dict:
    """JSON-friendly view of a parsed message."""
    out: dict = {
        "spi_r": msg.spi_r.hex(), "exchange": msg.exchange, "flags": msg.flags,
        "response": bool(msg.flags & FLAG_RESPONSE), "message_id": msg.message_id,
        "payloads": [PAYLOAD_NAMES.get(t, str(t)) for t, _ in msg.payloads],
        "notifies": [{"type": n.type, "name": n.name, "data": n.data.hex()} for n in msg.notifies],
    }
    sa = msg.of(PT_SA)
    if sa:
        out["chosen_proposal"] = [[t.name() for t in p.transforms] for p in sa[0]]  # type: ignore[attr-defined]
    ke = msg.of(PT_KE)
    if ke:
        out["ke_group"] = ke[0][0]  # type: ignore[index]
        out["ke_length"] = len(ke[0][1])  # type: ignore[index,arg-type]
    nonce = msg.of(PT_NONCE)
    if nonce:
        out["nonce_length"] = len(nonce[0])  # type: ignore[arg-type]
    vids = msg.of(PT_VENDOR)
    if vids:
        out["vendor_ids"] = [v.hex() for v in vids]  # type: ignore[union-attr]
    return out


# --- key exchange ---------------------------------------------------------

class KeyExchange:
    """A real DH key pair for a group; ``public`` is the KE payload's key data."""

    SUPPORTED = (14, 19, 31)

    def __init__(self, group: int) -> None:
        self.group = group
        if group == 14:
            self._x = secrets.randbits(256) | (1 << 255)
            self.public = pow(2, self._x, MODP_2048_P).to_bytes(256, "big")
        elif group == 19:
            from cryptography.hazmat.primitives.asymmetric import ec

            self._key = ec.generate_private_key(ec.SECP256R1())
            nums = self._key.public_key().public_numbers()
            self.public = nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")
        elif group == 31:
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            self._key = X25519PrivateKey.generate()  # type: ignore[assignment]
            self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        else:
            raise IkeWireError(f"DH group {group} not supported (use 14, 19 or 31)")


def new_spi() -> bytes:
    """A random non-zero 8-byte SPI."""
    while True:
        spi = os.urandom(8)
        if any(spi):
            return spi
