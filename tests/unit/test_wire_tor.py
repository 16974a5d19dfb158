"""Tor link codec (tor-spec s3-4), bridge lines and pt-spec SOCKS arguments: fixtures and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import tor as w


def test_versions_cell_bytes():
    assert w.build_versions() == bytes.fromhex("0000" "07" "0006" "0003" "0004" "0005")


def _var(cmd: int, payload: bytes, width: int = 4) -> bytes:
    return bytes(width) + bytes([cmd]) + struct.pack("!H", len(payload)) + payload


def test_parse_responder_flight():
    versions = bytes.fromhex("0000" "07" "0004" "0004" "0005")
    certs = _var(w.CERTS, bytes([2]) + bytes([1]) + struct.pack("!H", 3) + b"abc" + bytes([4]) + struct.pack("!H", 1) + b"z")
    challenge = _var(w.AUTH_CHALLENGE, bytes(32) + struct.pack("!HHH", 2, 1, 3))
    netinfo_payload = struct.pack("!IBB", 1700000000, 4, 4) + bytes([127, 0, 0, 1]) + bytes([1, 4, 4, 203, 0, 113, 5])
    netinfo = bytes(4) + bytes([w.NETINFO]) + netinfo_payload + bytes(509 - len(netinfo_payload))
    cells, rest = w.parse_cells(versions + certs + challenge + netinfo + b"\x00", None)
    assert [c.name for c in cells] == ["VERSIONS", "CERTS", "AUTH_CHALLENGE", "NETINFO"] and rest == b"\x00"
    assert w.parse_versions(cells[0].payload) == [4, 5] and w.negotiate(w.OFFERED_VERSIONS, [4, 5]) == 5
    assert w.parse_certs(cells[1].payload) == [(1, b"abc"), (4, b"z")]
    assert w.parse_auth_challenge(cells[2].payload).methods == [1, 3]
    ni = w.parse_netinfo(cells[3].payload)
    assert (ni.timestamp, ni.other_address, ni.my_addresses) == (1700000000, "127.0.0.1", ["203.0.113.5"])


def test_fixed_cell_before_versions_is_an_error():
    with pytest.raises(w.TorWireError):
        w.parse_cell(bytes(4) + bytes([w.NETINFO]) + bytes(509), None)


def test_netinfo_build():
    cell = w.build_netinfo(5, "203.0.113.9")
    assert len(cell) == 4 + 1 + 509 and cell[4] == w.NETINFO
    assert w.parse_netinfo(cell[5:]).other_address == "203.0.113.9"


def test_bridge_lines():
    b = w.parse_bridge_line("Bridge obfs4 203.0.113.1:443 " + "ab" * 20 + " cert=Zm9v+/x iat-mode=0")
    assert (b.transport, b.host, b.port, b.fingerprint) == ("obfs4", "203.0.113.1", 443, "AB" * 20)
    assert b.args == {"cert": "Zm9v+/x", "iat-mode": "0"}
    plain = w.parse_bridge_line("198.51.100.7:9001 " + "C" * 40)
    assert plain.transport is None and plain.fingerprint == "C" * 40
    v6 = w.parse_bridge_line("[2001:db8::1]:443")
    assert v6.host == "2001:db8::1" and v6.fingerprint is None
    for bad in ("", "obfs4", "obfs4 host:1", "203.0.113.1", "203.0.113.1:99999", "x 203.0.113.1:1 foo"):
        with pytest.raises(w.TorWireError):
            w.parse_bridge_line(bad)


def test_socks_args():
    user, pw = w.socks_args({"cert": "a;b=c", "iat-mode": "0"})
    assert user == "cert=a\\;b\\=c;iat-mode=0" and pw == "\x00"
    user, pw = w.socks_args({"cert": "x" * 300})
    assert len(user) == 255 and user + pw == "cert=" + "x" * 300


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([None, 3, 4, 5]))
def test_fuzz_cells(data, link):
    try:
        cells, _ = w.parse_cells(data, link)
    except w.TorWireError:
        return
    for c in cells:
        for fn in (w.parse_versions, w.parse_certs, w.parse_auth_challenge, w.parse_netinfo):
            try:
                fn(c.payload)
            except w.TorWireError:
                pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_bridge_line(text):
    try:
        w.parse_bridge_line(text)
    except w.TorWireError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_identity_cert(data):
    try:
        w.rsa_identity_fingerprint(data)
    except w.TorWireError:
        pass
