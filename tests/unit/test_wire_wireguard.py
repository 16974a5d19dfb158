"""WireGuard codec: message layouts (whitepaper s5.4), Noise primitives, fuzzing.

The full Noise_IKpsk2 exchange is checked against wireguard-go in
tests/net/test_vpn_wireguard.py; here a test-side responder written from the
whitepaper's responder equations checks the initiator end to end.
"""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import wireguard as w


def test_construction_hash_constant():
    # HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"), the initial chaining key every implementation hard-codes
    assert w.blake2s(w.CONSTRUCTION).hex() == "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36"


def test_hchacha20_vector():
    # draft-irtf-cfrg-xchacha-03 s2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert w._hchacha20(key, nonce).hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"


def test_tai64n():
    assert w.tai64n(0.0) == bytes.fromhex("400000000000000a" "00000000")
    assert w.tai64n(1.5)[8:] == struct.pack("!I", 500_000_000)


def test_initiation_layout_and_mac1():
    server = os.urandom(32)
    ini = w.Initiator(w.public_key(server), sender_index=0x01020304)
    msg = ini.initiation()
    assert len(msg) == 148 and msg[:8] == bytes.fromhex("01000000" "04030201")  # type 1, LE sender index
    assert msg[132:] == bytes(16)  # mac2 zero without a cookie
    assert msg[116:132] == w.mac(w.blake2s(w.LABEL_MAC1, w.public_key(server)), msg[:116])
    m = w.parse_message(msg)
    assert m.sender == 0x01020304 and m.ephemeral == msg[8:40]


def _respond(server_priv: bytes, initiation: bytes, psk: bytes = bytes(32)) -> bytes:
    """A responder from the whitepaper's equations (independent of Initiator's code path)."""
    sk = X25519PrivateKey.from_private_bytes(server_priv)
    spub = w.public_key(server_priv)
    c = w.blake2s(w.CONSTRUCTION)
    h = w.blake2s(w.blake2s(c, w.IDENTIFIER), spub)
    e_i = initiation[8:40]
    (c,) = w.kdf(c, e_i, 1)
    h = w.blake2s(h, e_i)
    c, k = w.kdf(c, sk.exchange(X25519PublicKey.from_public_bytes(e_i)), 2)
    s_i = w.aead_decrypt(k, 0, initiation[40:88], h)
    h = w.blake2s(h, initiation[40:88])
    c, k = w.kdf(c, sk.exchange(X25519PublicKey.from_public_bytes(s_i)), 2)
    w.aead_decrypt(k, 0, initiation[88:116], h)
    h = w.blake2s(h, initiation[88:116])
    e = X25519PrivateKey.generate()
    e_r = w.public_key(e.private_bytes_raw())
    (c,) = w.kdf(c, e_r, 1)
    h = w.blake2s(h, e_r)
    (c,) = w.kdf(c, e.exchange(X25519PublicKey.from_public_bytes(e_i)), 1)
    (c,) = w.kdf(c, e.exchange(X25519PublicKey.from_public_bytes(s_i)), 1)
    c, tau, k = w.kdf(c, psk, 3)
    h = w.blake2s(h, tau)
    empty = w.aead_encrypt(k, 0, b"", h)
    body = struct.pack("<B3xII", 2, 0x0A0B0C0D, struct.unpack("<I", initiation[4:8])[0]) + e_r + empty
    return body + w.mac(w.blake2s(w.LABEL_MAC1, s_i), body) + bytes(16)


def test_initiator_against_whitepaper_responder():
    server, client, psk = os.urandom(32), os.urandom(32), os.urandom(32)
    ini = w.Initiator(w.public_key(server), client, psk)
    resp = _respond(server, ini.initiation(), psk)
    assert len(resp) == 92
    assert ini.consume_response(resp).sender == 0x0A0B0C0D
    bad = bytearray(resp)
    bad[50] ^= 1
    with pytest.raises(w.WireGuardWireError, match="mac1"):
        ini.consume_response(bytes(bad))
    other = w.Initiator(w.public_key(server), client, os.urandom(32))
    resp = _respond(server, other.initiation(), psk)
    with pytest.raises(w.WireGuardWireError, match="AEAD"):
        other.consume_response(resp)


def test_decode_key():
    assert w.decode_key("A" * 43 + "=") == bytes(32)
    for bad in ("nope", "AAAA"):
        with pytest.raises(w.WireGuardWireError):
            w.decode_key(bad)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_parsers(data):
    ini = w.Initiator(os.urandom(32))
    ini.initiation()
    for fn in (w.parse_message, ini.consume_response, ini.cookie_from_reply):
        try:
            fn(data)
        except w.WireGuardWireError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.binary(min_size=0, max_size=150))
def test_fuzz_typed(mtype, rest):
    data = bytes([mtype, 0, 0, 0]) + rest
    try:
        w.parse_message(data)
    except w.WireGuardWireError:
        pass


def test_cookie_reply_decrypts():
    """A cookie reply (type 3) built per the whitepaper s5.4.7: XChaCha20-Poly1305 under
    HASH(LABEL_COOKIE || Spub_r), AD = mac1 of our initiation; the retry carries mac2."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    server = os.urandom(32)
    ini = w.Initiator(w.public_key(server), sender_index=7)
    msg = ini.initiation()
    key = w.blake2s(w.LABEL_COOKIE, w.public_key(server))
    nonce, cookie = os.urandom(24), os.urandom(16)
    sealed = ChaCha20Poly1305(w._hchacha20(key, nonce[:16])).encrypt(b"\x00" * 4 + nonce[16:], cookie, msg[116:132])
    reply = struct.pack("<B3xI", 3, 7) + nonce + sealed
    assert len(reply) == 64 and ini.cookie_from_reply(reply) == cookie
    again = ini.initiation(cookie=cookie)
    assert again[132:] == w.mac(cookie, again[:132])
    with pytest.raises(w.WireGuardWireError, match="sender index"):
        ini.cookie_from_reply(struct.pack("<B3xI", 3, 8) + nonce + sealed)
