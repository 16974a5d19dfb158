"""PPTP (RFC 2637 s2.1-2.2) and L2TPv2 (RFC 2661 s3-4, s6.1) codecs: fixtures and fuzzing."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import l2tp, pptp


def test_pptp_sccrq_bytes():
    raw = pptp.build_sccrq("host", "vend")
    assert len(raw) == 156
    # length 156, message type 1 (control), magic cookie, control type 1 (SCCRQ), reserved, version 1.0, reserved
    assert raw[:16] == bytes.fromhex("009c" "0001" "1a2b3c4d" "0001" "0000" "0100" "0000")
    assert raw[16:24] == bytes.fromhex("00000003" "00000003")  # framing and bearer capabilities
    assert raw[28:32] == b"host" and raw[92:96] == b"vend"


def _sccrp(result: int = 1) -> bytes:
    return struct.pack("!HHIHHHBBIIHH64s64s", 156, 1, 0x1A2B3C4D, 2, 0, 0x0100, result, 0, 1, 1, 1, 0x0102,
                       b"linux", b"poptop")


def test_pptp_sccrp_parse():
    m = pptp.parse_control(_sccrp())
    assert (m.control_type, m.result_code, m.result_text) == (2, 1, "successful channel establishment")
    assert (m.hostname, m.vendor, m.firmware_revision, m.protocol_version) == ("linux", "poptop", 0x0102, 0x0100)
    assert pptp.parse_control(_sccrp(5)).result_text == "protocol version not supported"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_pptp(data):
    for fn in (pptp.parse_control, pptp.message_length):
        try:
            fn(data)
        except pptp.PptpWireError:
            pass


def test_l2tp_sccrq_bytes():
    raw = l2tp.build_sccrq(0x1234, "lac")
    # T, L, S bits and version 2; length; tunnel 0, session 0, Ns 0, Nr 0
    assert raw[:12] == bytes.fromhex("c802") + struct.pack("!H", len(raw)) + bytes(8)
    # first AVP: M bit + length 8, vendor 0, type 0 (Message Type) = 1 (SCCRQ)
    assert raw[12:20] == bytes.fromhex("8008" "0000" "0000" "0001")
    m = l2tp.parse_message(raw)
    assert m.message_type == "SCCRQ"
    s = m.summary()
    assert s["assigned_tunnel_id"] == 0x1234 and s["host_name"] == "lac" and s["protocol_version"] == "1.0"
    assert all(a.mandatory for a in m.avps[:5])


def test_l2tp_sccrp_and_zlb():
    avps = (l2tp.avp(0, b"\x00\x02") + l2tp.avp(2, b"\x01\x00") + l2tp.avp(7, b"lns")
            + l2tp.avp(9, b"\x00\x07") + l2tp.avp(3, b"\x00\x00\x00\x03"))
    m = l2tp.parse_message(l2tp.build_control(0x1234, 0, 0, 1, avps))
    assert (m.message_type, m.tunnel_id, m.nr) == ("SCCRP", 0x1234, 1) and m.summary()["assigned_tunnel_id"] == 7
    zlb = l2tp.parse_message(bytes.fromhex("c802000c") + struct.pack("!HHHH", 0x1234, 0, 1, 1))
    assert zlb.message_type is None and zlb.avps == []
    stop = l2tp.parse_message(l2tp.build_stopccn(7, 0x1234, 1, 1))
    assert stop.message_type == "StopCCN" and stop.summary()["result_code"]["result"] == 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_l2tp(data):
    try:
        l2tp.parse_message(data).summary()
    except l2tp.L2tpWireError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=150))
def test_fuzz_l2tp_avps(avps):
    try:
        l2tp.parse_message(l2tp.build_control(1, 0, 0, 0, avps)).summary()
    except l2tp.L2tpWireError:
        pass
