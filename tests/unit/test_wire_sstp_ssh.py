"""SSTP (MS-SSTP s2.2) and SSH transport (RFC 4253 s4.2, s6, s7.1) codecs: fixtures and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import ssh, sstp


def test_sstp_request():
    raw = sstp.build_request("vpn.test", "{00000000-0000-0000-0000-000000000001}").decode()
    assert raw.startswith("SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n")
    assert "Content-Length: 18446744073709551615\r\n" in raw and raw.endswith("\r\n\r\n")


def test_sstp_call_connect_request_bytes():
    # version 1.0, C=1, length 14 | CALL_CONNECT_REQUEST, 1 attribute | reserved, ENCAPSULATED_PROTOCOL_ID, len 6, PPP
    assert sstp.build_call_connect_request() == bytes.fromhex("1001000e" "00010001" "00010006" "0001")


def test_sstp_call_connect_ack_parse():
    attr = struct.pack("!BBH", 0, 4, 40) + b"\x00\x00\x00\x03" + bytes(32)  # CRYPTO_BINDING_REQ, SHA1|SHA256
    raw = struct.pack("!BBHHH", 0x10, 1, 8 + len(attr), 2, 1) + attr
    p = sstp.parse_packet(raw)
    assert p.control and p.message_name == "CALL_CONNECT_ACK" and p.attributes[0][0] == 4
    data = sstp.parse_packet(bytes.fromhex("10000006ff03"))
    assert not data.control and data.data == b"\xff\x03"
    with pytest.raises(sstp.SstpWireError):
        sstp.parse_packet(bytes.fromhex("11010004"))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_sstp(data):
    for fn in (sstp.parse_packet, sstp.packet_length):
        try:
            fn(data)
        except sstp.SstpWireError:
            pass


def test_ssh_banner():
    b, used = ssh.parse_banner(b"hello\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00\x00")
    assert (b.proto_version, b.software_version, b.comments) == ("2.0", "OpenSSH_9.2p1", "Debian-2+deb12u3")
    assert b.preamble == ["hello"] and used == 7 + 40
    with pytest.raises(ssh.SshWireError):
        ssh.parse_banner(b"SSH-2.0\r\n")
    assert ssh.build_banner("x") == b"SSH-2.0-x\r\n"


def test_ssh_kexinit_roundtrip_and_layout():
    payload = ssh.build_kexinit()
    assert payload[0] == 20 and len(payload) > 17
    k = ssh.parse_kexinit(payload)
    assert k.lists["kex_algorithms"][0] == "curve25519-sha256" and k.lists["languages_client_to_server"] == []
    pkt = ssh.wrap_packet(payload)
    assert len(pkt) % 8 == 0 and 4 <= pkt[4] and ssh.packet_length(pkt[:4]) == len(pkt)
    assert ssh.unwrap_packet(pkt) == payload


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_ssh(data):
    for fn in (ssh.parse_banner, ssh.parse_kexinit, ssh.unwrap_packet, ssh.packet_length):
        try:
            fn(data)
        except ssh.SshWireError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_kexinit_body(body):
    try:
        ssh.parse_kexinit(bytes([20]) + bytes(16) + body)
    except ssh.SshWireError:
        pass
