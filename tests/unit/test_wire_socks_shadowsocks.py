"""SOCKS5 (RFC 1928/1929), HTTP CONNECT heads, and the Shadowsocks AEAD codec: fixtures and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import shadowsocks as ss
from censorscope.probes.wire import socks as w


def test_socks_requests():
    assert w.build_greeting([0, 2]) == b"\x05\x02\x00\x02"
    assert w.build_connect("203.0.113.1", 443) == bytes.fromhex("050100" "01" "cb007101" "01bb")
    assert w.build_connect("example.org", 80) == b"\x05\x01\x00\x03\x0bexample.org\x00\x50"
    assert w.build_connect("2001:db8::1", 22)[3] == 4
    assert w.build_userpass("u", "pw") == b"\x01\x01u\x02pw"


def test_socks_replies():
    assert w.parse_method_choice(b"\x05\xff") == 0xFF
    r = w.parse_connect_reply(bytes.fromhex("05000001" "7f000001" "1f90"))
    assert (r.reply, r.bound_host, r.bound_port, r.reply_text) == (0, "127.0.0.1", 8080, "succeeded")
    head = bytes.fromhex("0505000304")
    assert w.reply_length(head) == 11
    assert w.parse_connect_reply(head + b"host\x00\x01").reply_text == "connection refused"
    with pytest.raises(w.SocksWireError):
        w.parse_connect_reply(bytes.fromhex("04000001" "7f000001" "1f90"))


def test_http_head():
    h = w.parse_http_head(b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\nrest")
    assert (h.status, h.reason, h.headers) == (200, "Connection established", [("Proxy-Agent", "x")])
    for bad in (b"HTTP/1.1 200 OK\r\n", b"SSH-2.0-x\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad\r\n\r\n"):
        with pytest.raises(w.HttpConnectWireError):
            w.parse_http_head(bad)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=100))
def test_fuzz_socks(data):
    for fn in (w.parse_method_choice, w.parse_userpass_reply, w.parse_connect_reply, w.reply_length):
        try:
            fn(data)
        except w.SocksWireError:
            pass
    try:
        w.parse_http_head(data)
    except w.HttpConnectWireError:
        pass


def test_evp_bytes_to_key_matches_openssl():
    # openssl enc -aes-256-cbc -k foobar -P -nosalt -md md5
    assert ss.evp_bytes_to_key(b"foobar", 32).hex().upper() == (
        "3858F62230AC3C915F300C664312C63F568378529614D22DDB49237D2F60BFDF")
    assert ss.evp_bytes_to_key(b"foobar", 16).hex().upper() == "3858F62230AC3C915F300C664312C63F"


@pytest.mark.parametrize("method", list(ss.METHODS))
def test_shadowsocks_roundtrip(method):
    enc = ss.Encryptor(method, "pw")
    first = enc.encrypt(ss.first_plaintext("127.0.0.1", 80, b"GET / HTTP/1.0\r\n\r\n"))
    size = ss.METHODS[method][0]
    assert first[:size] == enc.salt and len(first) == size + 2 + 16 + 7 + 18 + 16
    dec = ss.Decryptor(method, "pw")
    got = []
    for i in range(0, len(first), 5):  # arbitrary TCP segmentation
        got += dec.feed(first[i : i + 5])
    assert got == [b"\x01\x7f\x00\x00\x01\x00\x50GET / HTTP/1.0\r\n\r\n"]
    big = enc.encrypt(b"x" * 20000)
    assert b"".join(dec.feed(big)) == b"x" * 20000
    with pytest.raises(ss.ShadowsocksWireError):
        ss.Decryptor(method, "other").feed(first)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_shadowsocks(data):
    try:
        ss.Decryptor("chacha20-ietf-poly1305", "pw").feed(data)
    except ss.ShadowsocksWireError:
        pass
