"""Decision logic of the VPN censor behaviours on hand-built packets (no network)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from test_censor_packets import CLIENT, SERVER, SERVER6, tcp, udp

from censorscope.lab.censor.behaviours import quic_initial
from censorscope.lab.censor.config import ConfigError, load_config
from censorscope.lab.censor.engine import Decision, Engine, build_behaviours
from censorscope.probes.wire import fet as fet_rules


def engine(*behaviours: dict, seed: int = 1) -> Engine:
    cfg = load_config({"behaviours": list(behaviours), "seed": seed})
    return Engine(build_behaviours(cfg, state_dir=Path("/nonexistent"), log=lambda *a: None,
                                   rng=random.Random(seed)))


def actions(d: Decision) -> list[str]:
    return [r["action"] for r in d.logs]


def ovpn(opcode: int, acks: int = 0) -> bytes:
    body = bytes([opcode << 3]) + os.urandom(8) + bytes([acks]) + os.urandom(4 * acks)
    if acks:
        body += os.urandom(8)
    return body + (0).to_bytes(4, "big")


# --- openvpn_fingerprint ----------------------------------------------------------------------


def test_openvpn_udp_sequence_client_reset_then_server_reset_blocks_on_any_port():
    e = engine({"behaviour": "openvpn_fingerprint"})
    d1 = e.decide(udp(ovpn(7), sport=41000, dport=8443), 0.0)
    assert not d1.drop  # one opcode is not a sequence yet
    d2 = e.decide(udp(ovpn(8, acks=1), sport=8443, dport=41000, src=SERVER, dst=CLIENT), 0.01)
    assert d2.drop and actions(d2) == ["openvpn_fingerprint"]
    d3 = e.decide(udp(ovpn(5, acks=1), sport=41000, dport=8443), 0.02)
    assert d3.drop and actions(d3) == ["openvpn_flow_drop"]
    # another flow is judged on its own
    assert not e.decide(udp(ovpn(7), sport=41001, dport=8443), 0.03).drop


def test_openvpn_not_just_the_port_random_udp_on_1194_passes():
    e = engine({"behaviour": "openvpn_fingerprint"})
    junk = bytes([0x11]) + os.urandom(40)  # opcode 2 from the client: not a client reset
    assert not e.decide(udp(junk, sport=41000, dport=1194), 0.0).drop
    assert not e.decide(udp(ovpn(8, acks=1), sport=1194, dport=41000, src=SERVER, dst=CLIENT), 0.01).drop
    # a too-short "reset" is not OpenVPN either
    e2 = engine({"behaviour": "openvpn_fingerprint", "packets": 1})
    assert not e2.decide(udp(bytes([0x38]) + os.urandom(9), sport=41002, dport=1194), 0.0).drop


def test_openvpn_wrong_server_answer_clears_the_flow():
    e = engine({"behaviour": "openvpn_fingerprint", "packets": 3})
    assert not e.decide(udp(ovpn(7), sport=41000, dport=1194), 0.0).drop
    assert not e.decide(udp(bytes([0x04 << 3]) + os.urandom(30), sport=1194, dport=41000, src=SERVER, dst=CLIENT),
                        0.01).drop  # a control packet instead of a server reset
    assert not e.decide(udp(ovpn(5, acks=1), sport=41000, dport=1194), 0.02).drop


def test_openvpn_tcp_length_prefixed_reset():
    e = engine({"behaviour": "openvpn_fingerprint", "packets": 1})
    assert not e.decide(tcp(flags="S", seq=999, ack=0, dport=443), 0.0).drop
    pkt = ovpn(7)
    d = e.decide(tcp(len(pkt).to_bytes(2, "big") + pkt, dport=443), 0.01)
    assert d.drop and "openvpn_fingerprint" in actions(d)
    assert e.decide(tcp(b"", flags="A", dport=443), 0.02).drop  # the rest of the flow too
    # TLS on another connection: not OpenVPN
    assert not e.decide(tcp(flags="S", seq=999, ack=0, sport=40001), 0.03).drop
    assert not e.decide(tcp(b"\x16\x03\x01\x00\x05hello", sport=40001), 0.04).drop


def test_openvpn_transports_filter():
    e = engine({"behaviour": "openvpn_fingerprint", "packets": 1, "transports": ["tcp"]})
    assert not e.decide(udp(ovpn(7), sport=41000, dport=1194), 0.0).drop


# --- wireguard_drop ---------------------------------------------------------------------------


def test_wireguard_drops_only_initiations():
    e = engine({"behaviour": "wireguard_drop"})
    init = b"\x01\x00\x00\x00" + os.urandom(144)
    d = e.decide(udp(init, sport=40000, dport=51820), 0.0)
    assert d.drop and actions(d) == ["wireguard_initiation_drop"]
    assert not e.decide(udp(b"\x02\x00\x00\x00" + os.urandom(88), sport=51820, dport=40000, src=SERVER,
                            dst=CLIENT), 0.0).drop
    assert not e.decide(udp(b"\x01\x00\x00\x00" + os.urandom(100), dport=51820), 0.0).drop  # wrong length
    assert not e.decide(udp(b"\x04\x00\x00\x00" + os.urandom(144), dport=51820), 0.0).drop  # transport data
    e2 = engine({"behaviour": "wireguard_drop", "ports": [51820]})
    assert not e2.decide(udp(init, dport=443), 0.0).drop


# --- port_block -------------------------------------------------------------------------------


def test_port_block_presets_and_explicit_ports():
    e = engine({"behaviour": "port_block", "protocols": ["ikev2", "pptp", "l2tp"], "ports": ["tcp/8388"]})
    for dport in (500, 4500, 1701):
        assert e.decide(udp(os.urandom(40), sport=40000, dport=dport), 0.0).drop
    assert e.decide(tcp(flags="S", seq=1, ack=0, dport=1723), 0.0).drop
    assert e.decide(tcp(flags="S", seq=1, ack=0, dport=8388), 0.0).drop
    assert not e.decide(tcp(flags="S", seq=1, ack=0, dport=443), 0.0).drop
    assert not e.decide(udp(os.urandom(40), dport=501), 0.0).drop
    assert not e.decide(tcp(flags="S", seq=1, ack=0, dport=500), 0.0).drop  # IKE is UDP


def test_port_block_addresses_and_validation():
    e = engine({"behaviour": "port_block", "protocols": ["ikev2"], "addresses": [SERVER6]})
    assert not e.decide(udp(os.urandom(40), dport=500), 0.0).drop
    with pytest.raises(ConfigError):
        load_config({"behaviours": [{"behaviour": "port_block"}]})
    with pytest.raises(ConfigError):
        load_config({"behaviours": [{"behaviour": "port_block", "ports": ["sctp/5"]}]})


# --- fet_block --------------------------------------------------------------------------------


def _conn(e: Engine, payload: bytes, sport: int, now: float, dport: int = 8388) -> Decision:
    syn = e.decide(tcp(flags="S", seq=999, ack=0, sport=sport, dport=dport), now)
    if syn.drop:
        return syn
    return e.decide(tcp(payload, sport=sport, dport=dport), now + 0.01)


def test_fet_blocks_non_exempt_first_payload_then_the_3_tuple_for_the_residual_window():
    e = engine({"behaviour": "fet_block", "probability": 1.0, "residual": 5.0})
    random_payload = fet_rules.non_exempt_payload(200, random.Random(3).randbytes)
    assert not fet_rules.is_exempt(random_payload)
    d = _conn(e, random_payload, 40000, 0.0)
    assert d.drop and "fet_block" in actions(d)
    assert e.decide(tcp(b"", flags="A", sport=40000, dport=8388), 0.1).drop  # rest of the flow
    # residual: a new connection with an exempt payload on the same 3-tuple is dropped at the SYN
    d2 = _conn(e, b"GET / HTTP/1.1\r\n\r\n", 40001, 1.0)
    assert d2.drop and actions(d2) == ["fet_residual_drop"]
    # other port: unaffected; after the window: unaffected
    assert not _conn(e, b"GET / HTTP/1.1\r\n\r\n", 40002, 1.0, dport=8389).drop
    assert not _conn(e, b"GET / HTTP/1.1\r\n\r\n", 40003, 6.0).drop


def test_fet_exempt_payloads_never_blocked():
    e = engine({"behaviour": "fet_block", "probability": 1.0})
    rng = random.Random(5)
    for i, rule in enumerate(fet_rules.RULES):
        payload = fet_rules.exempt_payload(rule, 200, rng.randbytes)
        d = _conn(e, payload, 41000 + i, float(i))
        assert not d.drop, rule
        assert actions(d) == ["fet_exempt"]


def test_fet_probability_spares_some_connections():
    e = engine({"behaviour": "fet_block", "probability": 0.263, "residual": 0.0}, seed=7)
    rng = random.Random(9)
    blocked = sum(_conn(e, fet_rules.non_exempt_payload(100, rng.randbytes), 30000 + i, float(i)).drop
                  for i in range(400))
    assert 60 < blocked < 150  # ~105 expected


def test_fet_address_filter():
    e = engine({"behaviour": "fet_block", "probability": 1.0, "addresses": [SERVER6]})
    assert not _conn(e, fet_rules.non_exempt_payload(100), 40000, 0.0).drop


# --- quic_sni ---------------------------------------------------------------------------------


def client_initial(sni: str) -> bytes:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    conf = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=sni)
    conn = QuicConnection(configuration=conf)
    conn.connect((SERVER, 443), now=0.0)
    return conn.datagrams_to_send(now=0.0)[0][0]


def test_quic_initial_decrypts_to_the_sni():
    assert quic_initial.initial_sni(client_initial("forbidden.example.org")) == "forbidden.example.org"
    assert quic_initial.initial_sni(os.urandom(1200)) is None
    broken = bytearray(client_initial("forbidden.example.org"))
    broken[200] ^= 0xFF  # inside the protected payload: the AEAD tag no longer matches
    assert quic_initial.initial_sni(bytes(broken)) is None


def test_quic_sni_drops_the_3_tuple_for_the_window():
    e = engine({"behaviour": "quic_sni", "sni": ["forbidden.example.org"], "duration": 3.0})
    assert not e.decide(udp(client_initial("innocuous.example.org"), sport=50000, dport=443), 0.0).drop
    d = e.decide(udp(client_initial("www.forbidden.example.org"), sport=50001, dport=443), 1.0)
    assert d.drop and "quic_sni_block" in actions(d)
    # any UDP of the 3-tuple, other source ports and the server's answers included
    assert e.decide(udp(os.urandom(50), sport=50002, dport=443), 2.0).drop
    assert e.decide(udp(os.urandom(50), sport=443, dport=50000, src=SERVER, dst=CLIENT), 2.0).drop
    assert not e.decide(udp(os.urandom(50), sport=50002, dport=443), 4.5).drop  # window over
