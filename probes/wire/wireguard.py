"""WireGuard handshake codec (WireGuard whitepaper s5.4, Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s).

``Initiator`` builds a handshake initiation (type 1, 148 bytes) for a
responder's static public key, and ``Initiator.consume_response`` checks a
handshake response (type 2, 92 bytes) cryptographically: the responder must
know its static private key (and the preshared key) for the empty AEAD
payload to open. ``parse_message`` splits any message into its fields.
Parsers raise ``WireGuardWireError``.

Crypto: X25519 and ChaCha20-Poly1305 from ``cryptography``; BLAKE2s (hash,
keyed MAC with 16-byte output) and HMAC-BLAKE2s from ``hashlib``/``hmac``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from censorscope.probes.wire.vpn_reader import Reader, WireError

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
SIZES = {INITIATION: 148, RESPONSE: 92, COOKIE_REPLY: 64}
NAMES = {1: "handshake_initiation", 2: "handshake_response", 3: "cookie_reply", 4: "transport_data"}
#: TAI64 label: 2^62 + 10 (the TAI-UTC offset at 1970, as wireguard-go uses)
TAI64_BASE = 0x400000000000000A


class WireGuardWireError(WireError):
    """Bytes that are not a valid WireGuard message, or fail its cryptographic checks."""


def blake2s(*parts: bytes) -> bytes:
    """HASH(): BLAKE2s-256 of the concatenation."""
    return hashlib.blake2s(b"".join(parts)).digest()


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(): keyed BLAKE2s with a 16-byte output."""
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def kdf(chaining_key: bytes, data: bytes, n: int) -> list[bytes]:
    """KDF_n(): HKDF with HMAC-BLAKE2s, returning ``n`` 32-byte outputs."""
    t0 = _hmac(chaining_key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = _hmac(t0, prev + bytes([i]))
        out.append(prev)
    return out


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    """AEAD(): ChaCha20-Poly1305, nonce = 32 zero bits || 64-bit little-endian counter."""
    return ChaCha20Poly1305(key).encrypt(b"\x00" * 4 + struct.pack("<Q", counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    """Inverse of ``aead_encrypt``; raises ``WireGuardWireError`` when the tag fails."""
    try:
        return ChaCha20Poly1305(key).decrypt(b"\x00" * 4 + struct.pack("<Q", counter), ciphertext, ad)
    except InvalidTag:
        raise WireGuardWireError("AEAD tag does not verify") from None


def tai64n(now: float | None = None) -> bytes:
    """12-byte TAI64N timestamp (big-endian seconds label, nanoseconds)."""
    now = time.time() if now is None else now
    secs = int(now)
    return struct.pack("!QI", TAI64_BASE + secs, int((now - secs) * 1e9))


def decode_key(text: str) -> bytes:
    """A base64 WireGuard key (as ``wg`` prints it) to 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise WireGuardWireError("key is not base64") from None
    if len(raw) != 32:
        raise WireGuardWireError(f"key has {len(raw)} bytes, expected 32")
    return raw


def _pub(priv: X25519PrivateKey) -> bytes:
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key(private: bytes) -> bytes:
    """The X25519 public key of a 32-byte private key."""
    return _pub(X25519PrivateKey.from_private_bytes(private))


def _dh(priv: X25519PrivateKey, pub: bytes) -> bytes:
    try:
        return priv.exchange(X25519PublicKey.from_public_bytes(pub))
    except ValueError:  # low-order point: all-zero shared secret
        raise WireGuardWireError("invalid public key (low-order point)") from None


@dataclass(frozen=True)
class Message:
    """A parsed WireGuard message (fields present per type)."""

    type: int
    sender: int | None = None
    receiver: int | None = None
    ephemeral: bytes | None = None
    encrypted_static: bytes | None = None
    encrypted_timestamp: bytes | None = None
    encrypted_nothing: bytes | None = None
    nonce: bytes | None = None
    encrypted_cookie: bytes | None = None
    mac1: bytes | None = None
    mac2: bytes | None = None

    @property
    def name(self) -> str:
        """``handshake_response`` …"""
        return NAMES.get(self.type, f"unknown({self.type})")


def parse_message(data: bytes) -> Message:
    """Split a message into its fields (no cryptographic checks)."""
    r = Reader(data, WireGuardWireError)
    mtype = r.u8()
    if r.take(3) != b"\x00\x00\x00":
        raise WireGuardWireError("reserved bytes are not zero")
    if mtype in SIZES and len(data) != SIZES[mtype]:
        raise WireGuardWireError(f"{NAMES[mtype]} of {len(data)} bytes, expected {SIZES[mtype]}")

    def le32() -> int:
        return struct.unpack("<I", r.take(4))[0]

    if mtype == INITIATION:
        return Message(mtype, sender=le32(), ephemeral=r.take(32), encrypted_static=r.take(48),
                       encrypted_timestamp=r.take(28), mac1=r.take(16), mac2=r.take(16))
    if mtype == RESPONSE:
        return Message(mtype, sender=le32(), receiver=le32(), ephemeral=r.take(32),
                       encrypted_nothing=r.take(16), mac1=r.take(16), mac2=r.take(16))
    if mtype == COOKIE_REPLY:
        return Message(mtype, receiver=le32(), nonce=r.take(24), encrypted_cookie=r.take(32))
    if mtype == TRANSPORT:
        if len(data) < 32:
            raise WireGuardWireError("transport message shorter than 32 bytes")
        return Message(mtype, receiver=le32())
    raise WireGuardWireError(f"unknown message type {mtype}")


class Initiator:
    """One handshake attempt from our static key to a responder's public key."""

    def __init__(self, responder_public: bytes, static_private: bytes | None = None,
                 preshared_key: bytes | None = None, sender_index: int | None = None,
                 ephemeral_private: bytes | None = None) -> None:
        if len(responder_public) != 32:
            raise WireGuardWireError("responder public key must be 32 bytes")
        self.responder_public = responder_public
        self.static = X25519PrivateKey.from_private_bytes(static_private or os.urandom(32))
        self.psk = preshared_key or b"\x00" * 32
        self.sender_index = int.from_bytes(os.urandom(4), "little") if sender_index is None else sender_index
        self.ephemeral = X25519PrivateKey.from_private_bytes(ephemeral_private or os.urandom(32))
        self.message: bytes | None = None
        self._c = self._h = b""
        self.send_key: bytes | None = None
        self.receive_key: bytes | None = None
        self.receiver_index: int | None = None

    @property
    def static_public(self) -> bytes:
        """Our static public key (the peer key the server must know)."""
        return _pub(self.static)

    def initiation(self, timestamp: bytes | None = None, cookie: bytes | None = None) -> bytes:
        """Build the 148-byte handshake initiation (mac2 from a cookie when given)."""
        c = blake2s(CONSTRUCTION)
        h = blake2s(c, IDENTIFIER)
        h = blake2s(h, self.responder_public)
        e_pub = _pub(self.ephemeral)
        (c,) = kdf(c, e_pub, 1)
        h = blake2s(h, e_pub)
        c, k = kdf(c, _dh(self.ephemeral, self.responder_public), 2)
        enc_static = aead_encrypt(k, 0, self.static_public, h)
        h = blake2s(h, enc_static)
        c, k = kdf(c, _dh(self.static, self.responder_public), 2)
        enc_ts = aead_encrypt(k, 0, timestamp or tai64n(), h)
        h = blake2s(h, enc_ts)
        body = struct.pack("<B3xI", INITIATION, self.sender_index) + e_pub + enc_static + enc_ts
        mac1 = mac(blake2s(LABEL_MAC1, self.responder_public), body)
        mac2 = mac(cookie, body + mac1) if cookie else b"\x00" * 16
        self._c, self._h = c, h
        self.message = body + mac1 + mac2
        return self.message

    def consume_response(self, data: bytes) -> Message:
        """Validate a handshake response to our initiation; raise ``WireGuardWireError`` if it fails.

        Checks: type and size, receiver index = our sender index, mac1 keyed
        with *our* static public key, and the AEAD of the empty payload, which
        only opens if the responder holds the private key for
        ``responder_public`` and the same preshared key.
        """
        if self.message is None:
            raise WireGuardWireError("no initiation was sent")
        m = parse_message(data)
        if m.type != RESPONSE:
            raise WireGuardWireError(f"expected handshake_response, got {m.name}")
        if m.receiver != self.sender_index:
            raise WireGuardWireError("response is for another sender index")
        want = mac(blake2s(LABEL_MAC1, self.static_public), data[:60])
        if not hmac.compare_digest(want, m.mac1 or b""):
            raise WireGuardWireError("mac1 does not verify")
        assert m.ephemeral is not None and m.encrypted_nothing is not None
        c, h = self._c, self._h
        (c,) = kdf(c, m.ephemeral, 1)
        h = blake2s(h, m.ephemeral)
        (c,) = kdf(c, _dh(self.ephemeral, m.ephemeral), 1)
        (c,) = kdf(c, _dh(self.static, m.ephemeral), 1)
        c, tau, k = kdf(c, self.psk, 3)
        h = blake2s(h, tau)
        aead_decrypt(k, 0, m.encrypted_nothing, h)
        self.send_key, self.receive_key = kdf(c, b"", 2)  # whitepaper s5.4.5: the transport keys
        self.receiver_index = m.sender
        return m

    def keepalive(self) -> bytes:
        """The first transport message (type 4, counter 0) with an empty payload: a keepalive.

        Sending it confirms the session to the responder, which only then
        counts the handshake as complete (``wg show latest-handshakes``).
        """
        if self.send_key is None or self.receiver_index is None:
            raise WireGuardWireError("no validated handshake response yet")
        return struct.pack("<B3xIQ", TRANSPORT, self.receiver_index, 0) + aead_encrypt(self.send_key, 0, b"", b"")

    def cookie_from_reply(self, data: bytes) -> bytes:
        """Decrypt a cookie reply (XChaCha20-Poly1305 keyed by HASH(LABEL_COOKIE || Spub_r))."""
        m = parse_message(data)
        if m.type != COOKIE_REPLY or self.message is None:
            raise WireGuardWireError("not a cookie reply to our initiation")
        if m.receiver != self.sender_index:
            raise WireGuardWireError("cookie reply is for another sender index")
        key = blake2s(LABEL_COOKIE, self.responder_public)
        assert m.nonce is not None and m.encrypted_cookie is not None
        return _xchacha_decrypt(key, m.nonce, m.encrypted_cookie, self.message[116:132])


def _xchacha_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """XChaCha20-Poly1305 via HChaCha20 subkey derivation (draft-irtf-cfrg-xchacha s2.2)."""
    subkey = _hchacha20(key, nonce[:16])
    try:
        return ChaCha20Poly1305(subkey).decrypt(b"\x00" * 4 + nonce[16:], ciphertext, ad)
    except InvalidTag:
        raise WireGuardWireError("cookie reply does not decrypt") from None


def _hchacha20(key: bytes, nonce16: bytes) -> bytes:
    def rotl(v: int, c: int) -> int:
        return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))

    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), *struct.unpack("<4I", nonce16)]

    def qr(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))
