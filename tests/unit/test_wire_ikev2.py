"""IKEv2 codec: RFC 7296 layouts, a hand-written NO_PROPOSAL_CHOSEN reply, DH groups, fuzzing."""

from __future__ import annotations

import shutil
import struct
import subprocess
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import ikev2 as w

SPI = bytes.fromhex("0011223344556677")


def test_sa_init_header_and_chain():
    msg = w.build_sa_init(SPI, w.default_proposals([19]), 19, bytes(64), bytes(32),
                          [(w.N_NAT_DETECTION_SOURCE_IP, bytes(20))])
    # SPIi, SPIr = 0, next payload SA (33), version 2.0, IKE_SA_INIT (34), Initiator flag, msg id 0, length
    assert msg[:28] == SPI + bytes(8) + bytes([33, 0x20, 34, 0x08]) + bytes(4) + struct.pack("!I", len(msg))
    m = w.parse_message(msg)
    assert [t for t, _ in m.payloads] == [w.PT_SA, w.PT_KE, w.PT_NONCE, w.PT_NOTIFY]
    props = m.of(w.PT_SA)[0]
    assert [p.number for p in props] == [1, 2]
    assert props[0].transforms[0] == w.Transform(w.ENCR, w.ENCR_AES_CBC, 256)
    assert props[0].transforms[0].name() == "ENCR_AES_CBC_256"
    assert m.of(w.PT_KE)[0] == (19, bytes(64))


def test_cookie_goes_first():
    msg = w.build_sa_init(SPI, w.default_proposals([14]), 14, bytes(256), bytes(32), cookie=b"C" * 20)
    m = w.parse_message(msg)
    assert m.payloads[0][0] == w.PT_NOTIFY and m.notify(w.N_COOKIE).data == b"C" * 20


def test_no_proposal_chosen_reply():
    # header (response flag 0x20) + one Notify payload: next 0, critical 0, length 8, proto 0, spi size 0, type 14
    raw = SPI + bytes.fromhex("8899aabbccddeeff") + bytes([41, 0x20, 34, 0x20]) + bytes(4) + struct.pack("!I", 36)
    raw += bytes.fromhex("00000008" "0000000e")
    m = w.parse_message(raw)
    assert m.flags & w.FLAG_RESPONSE and m.notify(w.N_NO_PROPOSAL_CHOSEN).name == "NO_PROPOSAL_CHOSEN"
    s = w.summary(m)
    assert s["payloads"] == ["Notify"] and s["spi_r"] == "8899aabbccddeeff"


def test_invalid_ke_payload_data():
    raw = SPI + bytes(8) + bytes([41, 0x20, 34, 0x20]) + bytes(4) + struct.pack("!I", 38)
    raw += bytes.fromhex("0000000a" "00000011" "000e")
    n = w.parse_message(raw).notify(w.N_INVALID_KE_PAYLOAD)
    assert n.name == "INVALID_KE_PAYLOAD" and n.data == b"\x00\x0e"


def test_nat_detection_hash():
    import hashlib

    want = hashlib.sha1(SPI + bytes(8) + bytes([127, 0, 0, 1]) + b"\x01\xf4").digest()
    assert w.nat_detection_hash(SPI, bytes(8), "127.0.0.1", 500) == want


def test_modp_2048_matches_openssl():
    openssl = shutil.which("openssl")
    assert openssl
    pem = subprocess.run([openssl, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:modp_2048"],
                         capture_output=True, check=True).stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography deprecates FFDH; only the numbers are compared
        from cryptography.hazmat.primitives.serialization import load_pem_parameters

        nums = load_pem_parameters(pem).parameter_numbers()
    assert nums.p == w.MODP_2048_P and nums.g == 2


@pytest.mark.parametrize("group,size", [(14, 256), (19, 64), (31, 32)])
def test_key_exchange_sizes(group, size):
    assert len(w.KeyExchange(group).public) == size
    with pytest.raises(w.IkeWireError):
        w.KeyExchange(2)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse(data):
    try:
        w.summary(w.parse_message(data))
    except w.IkeWireError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([33, 34, 40, 41, 43, 46]))
def test_fuzz_payload_bodies(body, ptype):
    raw = SPI + bytes(8) + bytes([ptype, 0x20, 34, 0x20]) + bytes(4) + struct.pack("!I", 32 + len(body))
    raw += struct.pack("!BBH", 0, 0, 4 + len(body)) + body
    try:
        w.summary(w.parse_message(raw))
    except w.IkeWireError:
        pass
