"""OpenVPN control-channel codec (OpenVPN protocol, ssl_pkt.h / "Network protocol" in the manual).

Packet layout (UDP; over TCP each packet is prefixed by a 2-byte length)::

    opcode<<3 | key_id     1 byte
    session_id             8 bytes
    [tls-auth: HMAC, replay packet_id (4), net_time (4)]
    [tls-crypt: replay packet_id (4), net_time (4), tag (32), then the rest encrypted]
    ack array length       1 byte, then that many 4-byte packet ids
    remote session_id      8 bytes, present when the ack array is not empty
    message packet_id      4 bytes, absent in P_ACK_V1
    payload                TLS records (P_CONTROL_V1) or TLVs (resets)

tls-auth HMACs ``packet_id || net_time || opcode || session_id || rest``;
tls-crypt authenticates ``opcode || session_id || packet_id || net_time ||
plaintext`` with HMAC-SHA256 and encrypts the plaintext with AES-256-CTR
using the tag's first 16 bytes as IV. Static key files hold 4 x 64 bytes:
cipher/HMAC keys for direction 0, then for direction 1.

Parsers raise ``OpenVPNWireError``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass, field

from censorscope.probes.wire.vpn_reader import Reader, WireError

OPCODES = {
    1: "P_CONTROL_HARD_RESET_CLIENT_V1", 2: "P_CONTROL_HARD_RESET_SERVER_V1", 3: "P_CONTROL_SOFT_RESET_V1",
    4: "P_CONTROL_V1", 5: "P_ACK_V1", 6: "P_DATA_V1", 7: "P_CONTROL_HARD_RESET_CLIENT_V2",
    8: "P_CONTROL_HARD_RESET_SERVER_V2", 9: "P_DATA_V2", 10: "P_CONTROL_HARD_RESET_CLIENT_V3",
    11: "P_CONTROL_WKC_V1",
}
HARD_RESET_CLIENT_V2, HARD_RESET_SERVER_V2, HARD_RESET_CLIENT_V3 = 7, 8, 10
CONTROL_V1, ACK_V1, CONTROL_WKC_V1 = 4, 5, 11
SERVER_RESETS = (2, 8)
DIGESTS = {"SHA1": "sha1", "SHA224": "sha224", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512",
           "MD5": "md5"}
TLS_CRYPT_TAG = 32


class OpenVPNWireError(WireError):
    """Bytes that are not a valid OpenVPN control packet, or fail authentication."""


@dataclass(frozen=True)
class StaticKey:
    """An ``OpenVPN Static key V1`` (256 bytes)."""

    data: bytes

    def cipher(self, direction: int) -> bytes:
        """The 64-byte cipher key slot of key ``direction`` (0 or 1)."""
        return self.data[128 * direction : 128 * direction + 64]

    def hmac(self, direction: int) -> bytes:
        """The 64-byte HMAC key slot of key ``direction``."""
        return self.data[128 * direction + 64 : 128 * direction + 128]


_KEY_RE = re.compile(
    r"-----BEGIN OpenVPN Static key V1-----(.*?)-----END OpenVPN Static key V1-----", re.S
)


def parse_static_key(text: str) -> StaticKey:
    """Parse the PEM-like static key block (hex, ``#`` comments allowed)."""
    m = _KEY_RE.search(text)
    if not m:
        raise OpenVPNWireError("no 'OpenVPN Static key V1' block")
    hexdigits = "".join(line.strip() for line in m.group(1).splitlines() if not line.strip().startswith("#"))
    try:
        raw = bytes.fromhex(hexdigits)
    except ValueError:
        raise OpenVPNWireError("static key is not hex") from None
    if len(raw) != 256:
        raise OpenVPNWireError(f"static key has {len(raw)} bytes, expected 256")
    return StaticKey(raw)


@dataclass(frozen=True)
class TlsAuth:
    """tls-auth: HMAC keys for sending and checking, per ``key-direction``.

    Direction None (bidirectional) uses key 0 both ways; a client normally
    has direction 1 (sends with key 1, checks with key 0).
    """

    key: StaticKey
    direction: int | None = None
    digest: str = "sha1"

    def _k(self, d: int) -> bytes:
        return self.key.hmac(d)[: hashlib.new(self.digest).digest_size]

    @property
    def send_key(self) -> bytes:
        """HMAC key for packets we send."""
        return self._k(0 if self.direction is None else self.direction)

    @property
    def recv_key(self) -> bytes:
        """HMAC key for packets we receive."""
        return self._k(0 if self.direction is None else 1 - self.direction)

    @property
    def size(self) -> int:
        """HMAC length on the wire."""
        return hashlib.new(self.digest).digest_size


@dataclass(frozen=True)
class TlsCrypt:
    """tls-crypt keys; ``client=True`` sends with key 1 (OpenVPN's inverse direction).

    For tls-crypt-v2, ``key`` is the client key Kc and ``wkc`` the wrapped
    client key that P_CONTROL_HARD_RESET_CLIENT_V3 carries after the
    tls-crypt-protected packet (the server unwraps it to learn Kc).
    """

    key: StaticKey
    client: bool = True
    wkc: bytes | None = None

    def keys(self, sending: bool) -> tuple[bytes, bytes]:
        """(AES-256 key, HMAC-SHA256 key) for one direction."""
        d = (1 if self.client else 0) if sending else (0 if self.client else 1)
        return self.key.cipher(d)[:32], self.key.hmac(d)[:32]


Wrap = TlsAuth | TlsCrypt | None


@dataclass
class Packet:
    """One control-channel packet (after unwrapping)."""

    opcode: int
    key_id: int
    session_id: bytes
    acks: list[int] = field(default_factory=list)
    remote_session_id: bytes | None = None
    packet_id: int | None = None
    payload: bytes = b""
    replay_packet_id: int | None = None
    net_time: int | None = None
    authenticated: bool | None = None  # True when a tls-auth HMAC / tls-crypt tag checked out

    @property
    def opcode_name(self) -> str:
        """``P_CONTROL_HARD_RESET_SERVER_V2`` …"""
        return OPCODES.get(self.opcode, f"unknown({self.opcode})")

    def summary(self) -> dict:
        """JSON-friendly fields for an observation."""
        return {
            "opcode": self.opcode, "opcode_name": self.opcode_name, "key_id": self.key_id,
            "session_id": self.session_id.hex(), "acks": self.acks,
            "remote_session_id": self.remote_session_id.hex() if self.remote_session_id else None,
            "packet_id": self.packet_id, "payload_length": len(self.payload),
            "replay_packet_id": self.replay_packet_id, "authenticated": self.authenticated,
        }


def _body(p: Packet) -> bytes:
    """ack array .. payload: the part after the (wrap) header."""
    if p.acks and p.remote_session_id is None:
        raise OpenVPNWireError("acks need a remote session id")
    out = bytearray([len(p.acks)])
    for a in p.acks:
        out += struct.pack("!I", a)
    if p.acks:
        out += p.remote_session_id or b""
    if p.opcode != ACK_V1:
        out += struct.pack("!I", p.packet_id or 0)
    out += p.payload
    return bytes(out)


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def build(p: Packet, wrap: Wrap = None) -> bytes:
    """Serialise ``p`` (with tls-auth / tls-crypt when ``wrap`` is given)."""
    if len(p.session_id) != 8:
        raise OpenVPNWireError("session id must be 8 bytes")
    if len(p.acks) > 8:
        raise OpenVPNWireError("at most 8 acks")
    head = bytes([(p.opcode << 3) | (p.key_id & 7)]) + p.session_id
    body = _body(p)
    if wrap is None:
        return head + body
    replay = struct.pack("!II", p.replay_packet_id or 1, p.net_time or 0)
    if isinstance(wrap, TlsAuth):
        mac = hmac.new(wrap.send_key, replay + head + body, wrap.digest).digest()
        return head + mac + replay + body
    enc_key, mac_key = wrap.keys(sending=True)
    tag = hmac.new(mac_key, head + replay + body, "sha256").digest()
    out = head + replay + tag + _ctr(enc_key, tag[:16], body)
    if p.opcode == HARD_RESET_CLIENT_V3:
        if not wrap.wkc:
            raise OpenVPNWireError("P_CONTROL_HARD_RESET_CLIENT_V3 needs a tls-crypt-v2 wrapped client key")
        out += wrap.wkc
    return out


def parse(data: bytes, wrap: Wrap = None) -> Packet:
    """Parse one packet. With ``wrap``, verify the HMAC/tag (``authenticated``)."""
    r = Reader(data, OpenVPNWireError)
    first = r.u8()
    opcode, key_id = first >> 3, first & 7
    if opcode not in OPCODES:
        raise OpenVPNWireError(f"unknown opcode {opcode}")
    if opcode in (6, 9):
        raise OpenVPNWireError(f"data-channel packet ({OPCODES[opcode]})")
    sid = r.take(8)
    head = data[:9]
    replay_pid = net_time = None
    authenticated = None
    if isinstance(wrap, TlsAuth):
        mac = r.take(wrap.size)
        replay = r.take(8)
        replay_pid, net_time = struct.unpack("!II", replay)
        body = r.rest()
        want = hmac.new(wrap.recv_key, replay + head + body, wrap.digest).digest()
        authenticated = hmac.compare_digest(mac, want)
    elif isinstance(wrap, TlsCrypt):
        replay = r.take(8)
        replay_pid, net_time = struct.unpack("!II", replay)
        tag = r.take(TLS_CRYPT_TAG)
        enc_key, mac_key = wrap.keys(sending=False)
        body = _ctr(enc_key, tag[:16], r.rest())
        want = hmac.new(mac_key, head + replay + body, "sha256").digest()
        authenticated = hmac.compare_digest(tag, want)
        if not authenticated:
            raise OpenVPNWireError("tls-crypt tag does not verify")
    else:
        body = r.rest()
    b = Reader(body, OpenVPNWireError)
    n = b.u8()
    if n > 8:
        raise OpenVPNWireError(f"ack array of {n} entries (max 8)")
    acks = [b.u32() for _ in range(n)]
    remote = b.take(8) if n else None
    pid = None if opcode == ACK_V1 else b.u32()
    return Packet(opcode, key_id, sid, acks, remote, pid, b.rest(), replay_pid, net_time, authenticated)


def frame_tcp(packet: bytes) -> bytes:
    """Prefix the 2-byte length used over TCP."""
    if len(packet) > 0xFFFF:
        raise OpenVPNWireError("packet too long for TCP framing")
    return struct.pack("!H", len(packet)) + packet


def unframe_tcp(buf: bytes) -> tuple[list[bytes], bytes]:
    """Split a TCP byte stream into packets; return (packets, leftover)."""
    out = []
    while len(buf) >= 2:
        (n,) = struct.unpack("!H", buf[:2])
        if n == 0:
            raise OpenVPNWireError("zero-length TCP frame")
        if len(buf) < 2 + n:
            break
        out.append(buf[2 : 2 + n])
        buf = buf[2 + n :]
    return out, buf


# --- client configuration (.ovpn subset) ---------------------------------

_INLINE_RE = re.compile(r"<(tls-auth|tls-crypt|tls-crypt-v2|ca|cert|key|auth-user-pass)>(.*?)</\1>", re.S)
_V2_RE = re.compile(r"-----BEGIN OpenVPN tls-crypt-v2 client key-----(.*?)-----END OpenVPN tls-crypt-v2 client key-----",
                    re.S)


def parse_tls_crypt_v2_client_key(text: str) -> tuple[StaticKey, bytes]:
    """(Kc, WKc) from a tls-crypt-v2 client key: base64 of 256 key bytes then the wrapped key,
    whose last 2 bytes are its own length."""
    import base64
    import binascii

    m = _V2_RE.search(text)
    if not m:
        raise OpenVPNWireError("no 'OpenVPN tls-crypt-v2 client key' block")
    try:
        raw = base64.b64decode("".join(m.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise OpenVPNWireError("tls-crypt-v2 client key is not base64") from None
    wkc = raw[256:]
    if len(wkc) < 2 or int.from_bytes(wkc[-2:], "big") != len(wkc):
        raise OpenVPNWireError("tls-crypt-v2 client key: wrapped key length does not match")
    return StaticKey(raw[:256]), wkc


@dataclass
class ClientConfig:
    """The parts of an .ovpn client config the probe uses."""

    proto: str | None = None
    remote: tuple[str, int] | None = None
    tls_auth: str | None = None
    tls_crypt: str | None = None
    tls_crypt_v2: str | None = None
    key_direction: int | None = None
    auth: str = "sha1"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    auth_user_pass: str | None = None  # inline block: username line, password line
    files: dict[str, str] = field(default_factory=dict)  # directive -> file path for non-inline blocks


def parse_ovpn(text: str) -> ClientConfig:
    """Parse an .ovpn-style config (inline blocks and file references)."""
    cfg = ClientConfig()
    for name, body in _INLINE_RE.findall(text):
        setattr(cfg, name.replace("-", "_"), body.strip())
    stripped = _INLINE_RE.sub("", text)
    for raw in stripped.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        d, args = words[0].lstrip("-"), words[1:]
        if d == "proto" and args:
            cfg.proto = "tcp" if args[0].startswith("tcp") else "udp"
        elif d == "remote" and args:
            port = int(args[1]) if len(args) > 1 and args[1].isdigit() else 1194
            cfg.remote = (args[0], port)
            if len(args) > 2:
                cfg.proto = "tcp" if args[2].startswith("tcp") else "udp"
        elif d == "key-direction" and args and args[0] in ("0", "1"):
            cfg.key_direction = int(args[0])
        elif d == "auth" and args:
            name = args[0].upper().replace("-", "")
            if name not in DIGESTS:
                raise OpenVPNWireError(f"unsupported auth digest {args[0]}")
            cfg.auth = DIGESTS[name]
        elif d in ("tls-auth", "tls-crypt", "tls-crypt-v2", "ca", "cert", "key", "auth-user-pass") and args \
                and args[0] != "[inline]":
            cfg.files[d] = args[0]
            if d == "tls-auth" and len(args) > 1 and args[1] in ("0", "1"):
                cfg.key_direction = int(args[1])
    return cfg


# --- key method 2 (inside TLS, after the handshake) -------------------------

def _string(text: str) -> bytes:
    raw = text.encode() + b"\x00"
    return struct.pack("!H", len(raw)) + raw


def build_key_method_2(options: str, peer_info: str, random: bytes, username: str | None = None,
                       password: str | None = None) -> bytes:
    """The client's key-method-2 message: a zero u32, method 2, pre-master (48) + random1 (32) +
    random2 (32) from ``random`` (112 bytes), the options string, username and password (empty
    strings without auth-user-pass), peer info."""
    if len(random) != 112:
        raise OpenVPNWireError("key method 2 needs 112 bytes of key source")
    creds = _string(username) + _string(password or "") if username is not None else b"\x00\x00\x00\x00"
    return b"\x00\x00\x00\x00\x02" + random + _string(options) + creds + _string(peer_info)


@dataclass(frozen=True)
class KeyMethod2:
    """The server's key-method-2 message (its key source is not kept)."""

    options: str
    length: int


def parse_server_key_method_2(data: bytes) -> KeyMethod2:
    """Parse the server's key-method-2 message (random1 + random2, then the options string)."""
    r = Reader(data, OpenVPNWireError)
    if r.u32() != 0:
        raise OpenVPNWireError("key method message does not start with a zero u32")
    if r.u8() & 0x0F != 2:
        raise OpenVPNWireError("not key method 2")
    r.take(64)
    n = r.u16()
    raw = r.take(n)
    return KeyMethod2(raw.rstrip(b"\x00").decode("utf-8", "replace"), 5 + 64 + 2 + n)
