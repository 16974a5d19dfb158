"""Decision logic of every censor behaviour on hand-built packets (packet in -> actions out)."""

from __future__ import annotations

import random
from pathlib import Path

import dns.message
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from test_censor_packets import CLIENT, CLIENT6, SERVER, SERVER6, client_hello, http_get, tcp, udp

from censorscope.lab.addressing import FORGED_POOL_V4, FORGED_POOL_V6
from censorscope.lab.censor.config import load_config
from censorscope.lab.censor.engine import Decision, Engine, build_behaviours


def engine(*behaviours: dict, seed: int = 1) -> Engine:
    cfg = load_config({"behaviours": list(behaviours), "seed": seed})
    return Engine(build_behaviours(cfg, state_dir=Path("/nonexistent"), log=lambda *a: None,
                                   rng=random.Random(seed)))


def actions(d: Decision) -> list[str]:
    return [r["action"] for r in d.logs]


def injected(d: Decision, what: str) -> list:
    return [IPv6(i.raw) if i.raw[0] >> 4 == 6 else IP(i.raw) for i in d.injects if i.what.startswith(what)]


def handshake(e: Engine, *, seq: int = 1000, ack: int = 5000, sport: int = 40000, dport: int = 443,
              now: float = 0.0, src: str = CLIENT, dst: str = SERVER) -> None:
    d = e.decide(tcp(flags="S", seq=seq - 1, ack=0, sport=sport, dport=dport, src=src, dst=dst), now)
    assert not d.drop


# --- dns_injection --------------------------------------------------------------------------


def test_dns_injection_forges_from_every_injector_and_lets_query_through():
    e = engine({"behaviour": "dns_injection", "names": ["blocked.example"],
                "injectors": [{"ttl": 44, "ip_id": 4321}, {"ttl": "copy", "dns_flags": 0x8580}]})
    q = dns.message.make_query("www.blocked.example", "A")
    d = e.decide(udp(q.to_wire(), sport=5353, dst="203.0.113.254", ttl=61), 0.0)
    assert not d.drop  # the real query still goes to its destination
    assert actions(d) == ["dns_inject"]
    first, second = injected(d, "dns_answer")
    for p in (first, second):
        assert (p.src, p.dst, p[UDP].sport, p[UDP].dport) == ("203.0.113.254", CLIENT, 53, 5353)
        resp = dns.message.from_wire(bytes(p[UDP].payload))
        assert resp.id == q.id and resp.answer[0][0].address in FORGED_POOL_V4
    assert (first.ttl, first.id) == (44, 4321)
    assert second.ttl == 61  # copied from the query
    assert dns.message.from_wire(bytes(second[UDP].payload)).flags == 0x8580
    assert d.logs[0]["answers"] == [dns.message.from_wire(bytes(p[UDP].payload)).answer[0][0].address
                                    for p in (first, second)]


def test_dns_injection_aaaa_v6_and_unlisted_names():
    e = engine({"behaviour": "dns_injection", "names": ["blocked.example"]})
    d = e.decide(udp(dns.message.make_query("blocked.example", "AAAA").to_wire(), src=CLIENT6, dst=SERVER6), 0)
    (p,) = injected(d, "dns_answer")
    assert p.src == SERVER6 and p.dst == CLIENT6
    assert dns.message.from_wire(bytes(p[UDP].payload)).answer[0][0].address in FORGED_POOL_V6
    for name in ("notblocked.example", "example.org"):
        d = e.decide(udp(dns.message.make_query(name, "A").to_wire()), 0)
        assert not d.injects and not d.logs and not d.drop
    d = e.decide(udp(dns.message.make_query("blocked.example", "TXT").to_wire()), 0)
    assert not d.injects and actions(d) == ["dns_not_forged"]


def test_dns_injection_answer_is_stable_per_name():
    e = engine({"behaviour": "dns_injection", "names": ["blocked.example"]})
    wire = dns.message.make_query("a.blocked.example", "A").to_wire()
    assert e.decide(udp(wire), 0).logs[0]["answers"] == e.decide(udp(wire), 1).logs[0]["answers"]


# --- rst_injection --------------------------------------------------------------------------


def test_rst_injection_exact_sequence_numbers_both_ends():
    e = engine({"behaviour": "rst_injection", "sni": ["blocked.example"], "ttl": 99, "window": 1234})
    handshake(e)
    hello = client_hello("www.blocked.example")
    d = e.decide(tcp(hello, seq=1000, ack=5000), 0.0)
    assert d.drop and actions(d) == ["rst"]
    (to_server,) = injected(d, "rst_to_server")
    (to_client,) = injected(d, "rst_to_client")
    assert (to_server.src, to_server.dst, to_server[TCP].sport, to_server[TCP].dport) == (CLIENT, SERVER, 40000, 443)
    assert to_server[TCP].seq == 1000 and "R" in str(to_server[TCP].flags)
    assert (to_client.src, to_client.dst, to_client[TCP].sport, to_client[TCP].dport) == (SERVER, CLIENT, 443, 40000)
    assert to_client[TCP].seq == 5000 and to_client[TCP].ack == 1000 + len(hello)
    assert to_client.ttl == 99 and to_client[TCP].window == 1234
    assert d.logs[0]["trigger"] == "sni" and d.logs[0]["value"] == "www.blocked.example"


def test_rst_injection_http_keyword_after_percent_decoding_and_host():
    e = engine({"behaviour": "rst_injection", "http_keywords": ["falun"], "http_hosts": ["blocked.example"]})
    handshake(e, dport=80)
    d = e.decide(tcp(http_get("/x/%66alun"), dport=80), 0)
    assert d.drop and d.logs[0]["trigger"] == "http_keyword" and d.logs[0]["value"] == "/x/falun"
    handshake(e, dport=80, sport=40001)
    d = e.decide(tcp(http_get("/", host="cdn.blocked.example"), dport=80, sport=40001), 0)
    assert d.drop and d.logs[0]["trigger"] == "http_host"
    handshake(e, dport=80, sport=40002)
    d = e.decide(tcp(http_get("/fine", host="ok.example"), dport=80, sport=40002), 0)
    assert not d.drop and not d.injects and not d.logs


def test_rst_injection_ipv6():
    e = engine({"behaviour": "rst_injection", "sni": ["blocked.example"]})
    handshake(e, src=CLIENT6, dst=SERVER6)
    d = e.decide(tcp(client_hello("blocked.example"), src=CLIENT6, dst=SERVER6), 0)
    (to_client,) = injected(d, "rst_to_client")
    assert d.drop and to_client.src == SERVER6 and to_client[TCP].seq == 5000


def test_split_client_hello_matches_only_with_reassembly():
    hello = client_hello("blocked.example")
    cut = 30
    seg1, seg2 = tcp(hello[:cut], seq=1000), tcp(hello[cut:], seq=1000 + cut)
    for reassemble, expect_drop in ((True, True), (False, False)):
        e = engine({"behaviour": "rst_injection", "sni": ["blocked.example"], "reassemble": reassemble})
        handshake(e)
        d1 = e.decide(seg1, 0)
        d2 = e.decide(seg2, 0)
        assert not d1.drop
        assert d2.drop is expect_drop
        if expect_drop:  # the RST to the server targets the segment that completed the hello
            (rst,) = injected(d2, "rst_to_server")
            assert rst[TCP].seq == 1000 + cut


def test_reassembly_handles_out_of_order_segments():
    hello = client_hello("blocked.example")
    e = engine({"behaviour": "rst_injection", "sni": ["blocked.example"]})
    handshake(e)
    assert not e.decide(tcp(hello[40:], seq=1040), 0).drop  # arrives first, waits for the gap
    d = e.decide(tcp(hello[:40], seq=1000), 0)
    assert d.drop


def test_split_http_request_keyword_only_with_reassembly():
    req = http_get("/falun")
    for reassemble, expect in ((True, True), (False, False)):
        e = engine({"behaviour": "rst_injection", "http_keywords": ["falun"], "reassemble": reassemble})
        handshake(e, dport=80)
        assert not e.decide(tcp(req[:7], dport=80), 0).drop
        assert e.decide(tcp(req[7:], seq=1007, dport=80), 0).drop is expect


def test_rst_injection_probability_is_seeded_and_roughly_right():
    e = engine({"behaviour": "rst_injection", "sni": ["blocked.example"], "probability": 0.75}, seed=7)
    hello = client_hello("blocked.example")
    outcomes = []
    for i in range(400):
        handshake(e, sport=20000 + i)
        d = e.decide(tcp(hello, sport=20000 + i), 0)
        outcomes.append(d.drop)
        assert actions(d) == (["rst"] if d.drop else ["spared"])
    assert 0.65 < sum(outcomes) / len(outcomes) < 0.85


def test_flow_is_judged_once():
    e = engine({"behaviour": "rst_injection", "sni": ["blocked.example"], "probability": 0.0})
    handshake(e)
    hello = client_hello("blocked.example")
    assert actions(e.decide(tcp(hello), 0)) == ["spared"]
    assert e.decide(tcp(b"\x17\x03\x03\x00\x10" + b"x" * 16, seq=1000 + len(hello)), 0).logs == []


# --- blockpage_injection --------------------------------------------------------------------


def test_blockpage_reaches_client_with_correct_seq_and_server_is_reset():
    e = engine({"behaviour": "blockpage_injection", "http_hosts": ["blocked.example"], "status": 451,
                "reason": "Unavailable For Legal Reasons", "headers": {"X-Censor": "yes"}, "body": "B" * 3000})
    handshake(e, dport=80)
    req = http_get("/", host="blocked.example")
    d = e.decide(tcp(req, dport=80, seq=1000, ack=5000), 0)
    assert d.drop and actions(d) == ["blockpage"]
    segs = injected(d, "blockpage_segment")
    assert len(segs) == 3  # the page is longer than one segment
    expected_seq = 5000
    for s in segs:
        assert (s.src, s.dst, s[TCP].sport, s[TCP].dport) == (SERVER, CLIENT, 80, 40000)
        assert s[TCP].seq == expected_seq and s[TCP].ack == 1000 + len(req)
        expected_seq += len(bytes(s[TCP].payload))
    assert "F" in str(segs[-1][TCP].flags) and "F" not in str(segs[0][TCP].flags)
    page = b"".join(bytes(s[TCP].payload) for s in segs)
    assert page.startswith(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n")
    assert b"X-Censor: yes\r\n" in page and b"Content-Length: 3000\r\n" in page and page.endswith(b"B" * 3000)
    (rst,) = injected(d, "rst_to_server")
    assert rst[TCP].seq == 1000 and rst.dst == SERVER


# --- residual -------------------------------------------------------------------------------


def residual_engine(mode: str, duration: float = 5.0) -> Engine:
    # residual listed last on purpose: it still runs before content inspection (stage order)
    return engine({"behaviour": "rst_injection", "sni": ["blocked.example"]},
                  {"behaviour": "residual", "duration": duration, "mode": mode})


def test_residual_window_resets_same_triple_then_expires():
    e = residual_engine("reset", duration=5.0)
    handshake(e, now=100.0)
    d = e.decide(tcp(client_hello("blocked.example")), 100.0)
    assert actions(d) == ["rst", "residual_start"]
    assert d.logs[1]["flow"] == {"client": CLIENT, "server": SERVER, "port": 443}
    innocuous = client_hello("innocuous.example")
    # inside the window: an innocuous hello on the same triple is reset (by residual, not rst_injection)
    handshake(e, sport=40001, now=102.0)
    d = e.decide(tcp(innocuous, sport=40001, seq=1000, ack=9000), 102.0)
    assert d.drop and actions(d) == ["residual_rst"] and d.logs[0]["behaviour"] == "residual"
    (to_client,) = injected(d, "rst_to_client")
    assert to_client[TCP].seq == 9000
    # another port of the same server is not punished
    handshake(e, sport=40002, dport=8443, now=102.0)
    assert not e.decide(tcp(innocuous, sport=40002, dport=8443), 102.0).drop
    # after the window: passes again, and the expiry is logged once
    d = e.decide(tcp(flags="S", seq=999, ack=0, sport=40003), 105.01)
    assert actions(d) == ["residual_expired"] and not d.drop
    assert not e.decide(tcp(innocuous, sport=40003), 105.02).drop


def test_residual_drop_mode_drops_syns():
    e = residual_engine("drop", duration=90.0)
    handshake(e, now=0.0)
    e.decide(tcp(client_hello("blocked.example")), 0.0)
    d = e.decide(tcp(flags="S", seq=1, ack=0, sport=41000), 89.0)
    assert d.drop and actions(d) == ["residual_drop"]
    assert not e.decide(tcp(flags="S", seq=1, ack=0, sport=41001), 90.5).drop


def test_residual_retrigger_restarts_window():
    e = engine({"behaviour": "rst_injection", "sni": ["blocked.example"]},
               {"behaviour": "residual", "duration": 10.0, "probability": 0.0})
    for now, expected in ((0.0, "residual_start"), (8.0, "residual_restart")):
        handshake(e, sport=int(now) + 30000, now=now)
        d = e.decide(tcp(client_hello("blocked.example"), sport=int(now) + 30000), now)
        assert expected in actions(d)
    assert e.behaviours[0].active(CLIENT, SERVER, 443, 17.0)
    assert not e.behaviours[0].active(CLIENT, SERVER, 443, 18.0)


# --- address behaviours ---------------------------------------------------------------------


def test_ip_blackhole_modes():
    e = engine({"behaviour": "ip_blackhole", "addresses": [SERVER]})
    assert e.decide(tcp(flags="S"), 0).drop
    assert not e.decide(tcp(b"x"), 0).drop  # syn mode: only connection attempts
    assert not e.decide(tcp(flags="S", dst="203.0.113.3"), 0).drop
    e = engine({"behaviour": "ip_blackhole", "addresses": ["2001:DB8:3::2"], "mode": "all"})
    d = e.decide(udp(b"x", src=CLIENT6, dst=SERVER6), 0)
    assert d.drop and actions(d) == ["drop"]


def test_icmp_reject_builds_unreachable_quoting_the_packet():
    e = engine({"behaviour": "icmp_reject", "addresses": [SERVER, SERVER6], "kind": "admin-prohibited",
                "source_v4": "198.51.100.1", "source_v6": "2001:db8:1::1"})
    syn = tcp(flags="S", sport=40123)
    d = e.decide(syn, 0)
    (icmp,) = injected(d, "icmp")
    assert d.drop and icmp.src == "198.51.100.1" and icmp.dst == CLIENT
    assert (icmp[ICMP].type, icmp[ICMP].code) == (3, 13)
    assert icmp[IPerror].dst == SERVER and icmp[TCPerror].sport == 40123
    d = e.decide(tcp(flags="S", src=CLIENT6, dst=SERVER6), 0)
    (icmp6,) = injected(d, "icmp")
    assert icmp6.src == "2001:db8:1::1" and icmp6[ICMPv6DestUnreach].code == 1


# --- shaping --------------------------------------------------------------------------------


def test_throttle_marks_matching_hello_and_declares_kernel_rules():
    e = engine({"behaviour": "rst_injection", "sni": ["other.example"]},
               {"behaviour": "throttle", "sni": ["slow.example"], "rate": "256kbit"})
    th = e.behaviours[1]
    handshake(e)
    d = e.decide(tcp(client_hello("www.slow.example")), 0)
    assert not d.drop and d.mark == th.mark and actions(d) == ["throttle"]
    assert d.logs[0]["rate"] == "256kbit"
    handshake(e, sport=40001)
    assert e.decide(tcp(client_hello("fast.example"), sport=40001), 0).mark == 0
    kr = [r.args for r in th.kernel_rules()]
    assert any("CLASSIFY" in a and th.classid in a for a in kr) and any("CONNMARK" in a for a in kr)


def test_latency_delays_only_listed_addresses_and_logs_once_per_flow():
    e = engine({"behaviour": "latency", "delay_ms": 50, "addresses": [SERVER]})
    d1 = e.decide(tcp(b"a"), 0)
    d2 = e.decide(tcp(b"b", seq=1001), 0)
    assert d1.delay == pytest.approx(0.05) and d2.delay == pytest.approx(0.05)
    assert actions(d1) == ["delay"] and actions(d2) == []
    assert e.decide(tcp(b"a", dst="203.0.113.3"), 0).delay == 0


def test_drop_cancels_delay_and_mark():
    e = engine({"behaviour": "ip_blackhole", "addresses": [SERVER]}, {"behaviour": "latency", "delay_ms": 10})
    d = e.decide(tcp(flags="S"), 0)
    assert d.drop and d.delay == 0


def test_malformed_packets_are_accepted_untouched():
    e = engine({"behaviour": "ip_blackhole", "addresses": [SERVER], "mode": "all"})
    d = e.decide(b"\x45\x00\x00", 0)
    assert not d.drop and not d.injects
