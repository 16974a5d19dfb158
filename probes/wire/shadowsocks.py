"""Shadowsocks AEAD client codec (SIP004 / shadowsocks.org "AEAD ciphers").

A session starts with a random salt; the session subkey is
HKDF-SHA1(master key, salt, info "ss-subkey"), the master key is OpenSSL's
EVP_BytesToKey(MD5) of the password. The stream is a sequence of chunks::

    [encrypted 2-byte payload length][16-byte tag][encrypted payload][16-byte tag]

each AEAD operation using a 12-byte little-endian counter nonce starting at 0.
The first plaintext of a client is the SOCKS5-style target address followed
by the initial payload. ``Decryptor.feed`` raises ``ShadowsocksWireError`` on
a chunk that does not authenticate or is malformed.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from censorscope.probes.wire.socks import encode_address
from censorscope.probes.wire.vpn_reader import WireError

#: method -> (key/salt size, AEAD class)
METHODS = {
    "chacha20-ietf-poly1305": (32, ChaCha20Poly1305),
    "aes-256-gcm": (32, AESGCM),
    "aes-128-gcm": (16, AESGCM),
}
TAG = 16
MAX_PAYLOAD = 0x3FFF


class ShadowsocksWireError(WireError):
    """A Shadowsocks chunk that does not authenticate or is malformed."""


def evp_bytes_to_key(password: bytes, key_len: int) -> bytes:
    """OpenSSL EVP_BytesToKey with MD5, one iteration, no salt."""
    out, prev = b"", b""
    while len(out) < key_len:
        prev = hashlib.md5(prev + password).digest()
        out += prev
    return out[:key_len]


def subkey(master: bytes, salt: bytes) -> bytes:
    """HKDF-SHA1(master, salt, "ss-subkey")."""
    return HKDF(hashes.SHA1(), len(master), salt, b"ss-subkey").derive(master)


class _Aead:
    def __init__(self, method: str, key: bytes) -> None:
        _, cls = METHODS[method]
        self.aead = cls(key)
        self.counter = 0

    def nonce(self) -> bytes:
        n = self.counter.to_bytes(12, "little")
        self.counter += 1
        return n


class Encryptor:
    """Client-to-server stream: ``salt`` is sent first (by the first ``encrypt``)."""

    def __init__(self, method: str, password: str, salt: bytes | None = None) -> None:
        if method not in METHODS:
            raise ShadowsocksWireError(f"unsupported method {method!r}")
        size, _ = METHODS[method]
        self.salt = salt or os.urandom(size)
        self._a = _Aead(method, subkey(evp_bytes_to_key(password.encode(), size), self.salt))
        self._salt_sent = False

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt ``data`` as one or more chunks (with the salt in front the first time)."""
        out = bytearray()
        if not self._salt_sent:
            out += self.salt
            self._salt_sent = True
        for i in range(0, max(len(data), 1), MAX_PAYLOAD):
            piece = data[i : i + MAX_PAYLOAD]
            out += self._a.aead.encrypt(self._a.nonce(), struct.pack("!H", len(piece)), None)
            out += self._a.aead.encrypt(self._a.nonce(), piece, None)
        return bytes(out)


class Decryptor:
    """Server-to-client stream: feed raw bytes, get plaintext chunks back."""

    def __init__(self, method: str, password: str) -> None:
        if method not in METHODS:
            raise ShadowsocksWireError(f"unsupported method {method!r}")
        self.method = method
        self.size, _ = METHODS[method]
        self.master = evp_bytes_to_key(password.encode(), self.size)
        self._a: _Aead | None = None
        self._buf = b""
        self._want: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads of every complete chunk."""
        self._buf += data
        out = []
        if self._a is None:
            if len(self._buf) < self.size:
                return out
            salt, self._buf = self._buf[: self.size], self._buf[self.size :]
            self._a = _Aead(self.method, subkey(self.master, salt))
        while True:
            if self._want is None:
                if len(self._buf) < 2 + TAG:
                    return out
                raw = self._open(self._buf[: 2 + TAG])
                self._buf = self._buf[2 + TAG :]
                (n,) = struct.unpack("!H", raw)
                if n == 0 or n > MAX_PAYLOAD:
                    raise ShadowsocksWireError(f"bad chunk length {n}")
                self._want = n
            if len(self._buf) < self._want + TAG:
                return out
            out.append(self._open(self._buf[: self._want + TAG]))
            self._buf = self._buf[self._want + TAG :]
            self._want = None

    def _open(self, chunk: bytes) -> bytes:
        assert self._a is not None
        try:
            return self._a.aead.decrypt(self._a.nonce(), chunk, None)
        except InvalidTag:
            raise ShadowsocksWireError("chunk does not authenticate (wrong password or not Shadowsocks)") from None


def first_plaintext(host: str, port: int, payload: bytes) -> bytes:
    """SOCKS5-style target address followed by the initial payload."""
    return encode_address(host, port) + payload
