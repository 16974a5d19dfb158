"""OpenVPN control-channel codec: byte fixtures (OpenVPN ssl_pkt layout), tls-auth/tls-crypt, fuzzing."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import openvpn as w

SID = bytes.fromhex("0102030405060708")
KEY_TEXT = "#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n" + "\n".join(
    bytes(range(i * 16, i * 16 + 16)).hex() for i in range(16)) + "\n-----END OpenVPN Static key V1-----\n"


def test_client_hard_reset_v2_bytes():
    p = w.Packet(w.HARD_RESET_CLIENT_V2, 0, SID, packet_id=0)
    # opcode 7 << 3 = 0x38, session id, empty ack array, message packet id 0: 14 bytes (16 on TCP)
    assert w.build(p) == bytes.fromhex("38" "0102030405060708" "00" "00000000")
    assert w.frame_tcp(w.build(p))[:2] == b"\x00\x0e"


def test_server_hard_reset_v2_parse():
    data = bytes.fromhex("40" "1112131415161718" "01" "00000000" "0102030405060708" "00000000")
    p = w.parse(data)
    assert (p.opcode, p.opcode_name, p.key_id) == (8, "P_CONTROL_HARD_RESET_SERVER_V2", 0)
    assert p.session_id.hex() == "1112131415161718" and p.acks == [0] and p.remote_session_id == SID
    assert p.packet_id == 0 and p.payload == b""


def test_ack_has_no_message_packet_id():
    p = w.Packet(w.ACK_V1, 0, SID, [5], bytes(8))
    raw = w.build(p)
    assert raw == bytes.fromhex("28" "0102030405060708" "01" "00000005") + bytes(8)
    assert w.parse(raw).packet_id is None


def test_static_key_slots():
    k = w.parse_static_key(KEY_TEXT)
    assert k.cipher(0) == bytes(range(0, 64)) and k.hmac(0) == bytes(range(64, 128))
    assert k.cipher(1) == bytes(range(128, 192)) and k.hmac(1) == bytes(range(192, 256))
    with pytest.raises(w.OpenVPNWireError):
        w.parse_static_key("-----BEGIN OpenVPN Static key V1-----\nabcd\n-----END OpenVPN Static key V1-----")


def test_tls_auth_layout_and_direction():
    k = w.parse_static_key(KEY_TEXT)
    client = w.TlsAuth(k, 1, "sha256")
    server = w.TlsAuth(k, 0, "sha256")
    p = w.Packet(w.HARD_RESET_CLIENT_V2, 0, SID, packet_id=0, replay_packet_id=1, net_time=0x5F000000)
    raw = w.build(p, client)
    # op | sid | HMAC-SHA256(key 1) | pid | time | acks | msg pid
    assert raw[:9] == bytes.fromhex("380102030405060708")
    assert raw[41:49] == bytes.fromhex("00000001" "5f000000")
    expected = hmac.new(k.hmac(1)[:32], raw[41:49] + raw[:9] + raw[49:], hashlib.sha256).digest()
    assert raw[9:41] == expected
    assert w.parse(raw, server).authenticated is True  # the server checks with key 1 too
    assert w.parse(raw, client).authenticated is False  # the client's receive key is key 0


def test_tls_crypt_roundtrip_between_roles():
    k = w.parse_static_key(KEY_TEXT)
    p = w.Packet(w.HARD_RESET_CLIENT_V2, 0, SID, packet_id=0, replay_packet_id=1, net_time=7)
    raw = w.build(p, w.TlsCrypt(k, client=True))
    assert len(raw) == 9 + 8 + 32 + 5  # header, pid+time, tag, encrypted (ack len + msg pid)
    got = w.parse(raw, w.TlsCrypt(k, client=False))
    assert got.authenticated and got.session_id == SID and got.packet_id == 0
    with pytest.raises(w.OpenVPNWireError, match="tag"):
        w.parse(raw, w.TlsCrypt(k, client=True))


def test_unframe_tcp():
    a, b = bytes.fromhex("380102030405060708" "0000000000"), b"\x28" + bytes(12)
    stream = w.frame_tcp(a) + w.frame_tcp(b) + b"\x00"
    pkts, rest = w.unframe_tcp(stream)
    assert pkts == [a, b] and rest == b"\x00"


def test_parse_ovpn():
    cfg = w.parse_ovpn("client\nproto tcp-client\nremote 203.0.113.5 443\nauth SHA512\nkey-direction 1\n"
                       f"<tls-auth>\n{KEY_TEXT}</tls-auth>\n<ca>\nPEM\n</ca>\n")
    assert cfg.proto == "tcp" and cfg.remote == ("203.0.113.5", 443) and cfg.auth == "sha512"
    assert cfg.key_direction == 1 and "BEGIN OpenVPN" in (cfg.tls_auth or "") and cfg.ca == "PEM"
    cfg = w.parse_ovpn("tls-auth ta.key 1\ntls-crypt tc.key\n")
    assert cfg.files == {"tls-auth": "ta.key", "tls-crypt": "tc.key"} and cfg.key_direction == 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse(data):
    k = w.parse_static_key(KEY_TEXT)
    for wrap in (None, w.TlsAuth(k, 1), w.TlsCrypt(k)):
        try:
            w.parse(data, wrap)
        except w.OpenVPNWireError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_unframe_and_ovpn(data):
    try:
        w.unframe_tcp(data)
    except w.OpenVPNWireError:
        pass
    text = data.decode("latin-1")
    for fn in (w.parse_ovpn, w.parse_static_key, w.parse_tls_crypt_v2_client_key):
        try:
            fn(text)
        except w.OpenVPNWireError:
            pass
    for fn in (w.parse_static_key, w.parse_tls_crypt_v2_client_key):  # inside the PEM-like armour
        for label in ("OpenVPN Static key V1", "OpenVPN tls-crypt-v2 client key"):
            try:
                fn(f"-----BEGIN {label}-----\n{text}\n-----END {label}-----")
            except w.OpenVPNWireError:
                pass


def test_fuzz_valid_prefix_mutations():
    base = w.build(w.Packet(8, 0, SID, [0], SID, 0, b"x" * 20))
    for i in range(len(base)):
        for delta in (1, 0x80):
            mutated = bytearray(base)
            mutated[i] ^= delta
            try:
                w.parse(bytes(mutated))
            except w.OpenVPNWireError:
                pass


def _v2_key(wkc_len: int = 40, declared: int | None = None) -> str:
    import base64

    wkc = bytes(range(wkc_len - 2)) + (declared or wkc_len).to_bytes(2, "big")
    body = base64.b64encode(bytes(range(256)) + wkc).decode()
    return ("-----BEGIN OpenVPN tls-crypt-v2 client key-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
            + "\n-----END OpenVPN tls-crypt-v2 client key-----\n")


def test_tls_crypt_v2_client_key_and_v3_reset():
    kc, wkc = w.parse_tls_crypt_v2_client_key(_v2_key())
    assert kc.data == bytes(range(256)) and len(wkc) == 40 and wkc[-2:] == b"\x00\x28"
    wrap = w.TlsCrypt(kc, client=True, wkc=wkc)
    raw = w.build(w.Packet(w.HARD_RESET_CLIENT_V3, 0, SID, packet_id=0, replay_packet_id=1, net_time=1), wrap)
    # opcode 10 << 3 = 0x50; a tls-crypt packet, then the wrapped client key in the clear
    assert raw[0] == 0x50 and raw.endswith(wkc) and len(raw) == 9 + 8 + 32 + 5 + 40
    got = w.parse(raw[:-40], w.TlsCrypt(kc, client=False))
    assert got.opcode_name == "P_CONTROL_HARD_RESET_CLIENT_V3" and got.authenticated
    with pytest.raises(w.OpenVPNWireError, match="length"):
        w.parse_tls_crypt_v2_client_key(_v2_key(40, declared=41))


def test_key_method_2():
    raw = w.build_key_method_2("V4,tls-client", "IV_VER=2.6.0\n", bytes(112), "alice", "pw")
    # zero u32, method 2, 112 bytes of key source, then u16-length NUL-terminated strings
    assert raw[:5] == b"\x00\x00\x00\x00\x02" and raw[5:117] == bytes(112)
    assert raw[117:] == (b"\x00\x0eV4,tls-client\x00" + b"\x00\x06alice\x00" + b"\x00\x03pw\x00"
                         + b"\x00\x0eIV_VER=2.6.0\n\x00")
    assert w.build_key_method_2("o", "", bytes(112))[117:] == b"\x00\x02o\x00" + b"\x00\x00\x00\x00" + b"\x00\x01\x00"
    server = b"\x00\x00\x00\x00\x02" + bytes(64) + b"\x00\x0eV4,tls-server\x00" + b"\x00\x00\x00\x00PUSH_REPLY\x00"
    km = w.parse_server_key_method_2(server)
    assert km.options == "V4,tls-server" and server[km.length :].endswith(b"PUSH_REPLY\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_key_method_2(data):
    try:
        w.parse_server_key_method_2(data)
    except w.OpenVPNWireError:
        pass
