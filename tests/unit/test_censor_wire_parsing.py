"""The censor's byte parsers: IP/TCP/UDP, TLS SNI, HTTP request, DNS query, name matching."""

from __future__ import annotations

import dns.message
import dns.rdatatype
import pytest
from test_censor_packets import CLIENT, CLIENT6, SERVER, SERVER6, client_hello, http_get, tcp, udp

from censorscope.lab.censor.dns_message import AA, QR, RD, forged_response, parse_query
from censorscope.lab.censor.first_bytes import inspect_payload
from censorscope.lab.censor.http_request import parse_request
from censorscope.lab.censor.matching import DomainMatcher, match_keyword
from censorscope.lab.censor.packet import ACK, PSH, MalformedPacket, parse
from censorscope.lab.censor.tls_hello import HelloStatus, parse_client_hello


def test_parse_tcp_v4_and_v6():
    p = parse(tcp(b"hello", seq=123, ack=456, ttl=42))
    assert (p.version, p.src, p.dst, p.sport, p.dport) == (4, CLIENT, SERVER, 40000, 443)
    assert (p.seq, p.ack, p.ttl, p.ip_id, p.window, p.payload) == (123, 456, 42, 77, 501, b"hello")
    assert p.flags == PSH | ACK and p.is_tcp and not p.is_syn
    p6 = parse(tcp(b"x", src=CLIENT6, dst=SERVER6, ttl=9))
    assert (p6.version, p6.src, p6.dst, p6.ttl, p6.payload) == (6, CLIENT6, SERVER6, 9, b"x")
    assert parse(tcp(flags="S")).is_syn


def test_parse_udp_and_garbage():
    p = parse(udp(b"q", sport=1234))
    assert p.is_udp and (p.sport, p.dport, p.payload) == (1234, 53, b"q")
    for bad in (b"", b"\x45\x00", b"\x70" + b"\x00" * 40):
        with pytest.raises(MalformedPacket):
            parse(bad)


def test_sni_extraction():
    hello = client_hello("www.Blocked.example")
    assert parse_client_hello(hello).status is HelloStatus.SNI
    assert parse_client_hello(hello).sni == "www.blocked.example"
    assert parse_client_hello(client_hello(None)).status is HelloStatus.NO_SNI
    assert parse_client_hello(b"GET / HTTP/1.1\r\n").status is HelloStatus.NOT_TLS


@pytest.mark.parametrize("cut", [1, 5, 9, 40, 100])
def test_truncated_hello_is_incomplete_not_a_match(cut):
    hello = client_hello("blocked.example")
    assert cut < len(hello)
    assert parse_client_hello(hello[:cut]).status is HelloStatus.INCOMPLETE
    # the rest alone does not look like TLS at all
    assert inspect_payload(hello[cut:]).kind in ("other", "http")


def test_http_request_parsing_and_percent_decoding():
    req = parse_request(http_get("/news/%46alun%20gong?q=1", host="WWW.Example.org:8080"))
    assert req is not None and req.complete
    assert req.method == "GET" and req.path == "/news/falun gong?q=1" and req.host == "www.example.org"
    partial = parse_request(b"GET /abc HTTP/1.1\r\nHost: www.exa")
    assert partial is not None and not partial.complete and partial.host is None
    assert parse_request(b"GET /ab") is None  # request line not finished
    assert parse_request(b"\x16\x03\x01") is None
    assert parse_request(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n").host == "2001:db8::1"


def test_inspect_payload_kinds():
    assert inspect_payload(b"").kind == "none"
    assert inspect_payload(client_hello("a.example")) .sni == "a.example"
    assert inspect_payload(http_get("/")).complete
    assert inspect_payload(b"GE").kind == "http" and not inspect_payload(b"GE").complete
    assert inspect_payload(b"SSH-2.0-OpenSSH").kind == "other"


def test_dns_query_parse_and_forged_response_roundtrip():
    q = dns.message.make_query("WWW.Blocked.Example", "AAAA")
    parsed = parse_query(q.to_wire())
    assert parsed is not None
    assert (parsed.txid, parsed.qname, parsed.qtype) == (q.id, "www.blocked.example", 28)
    wire = forged_response(parsed, "2001:db8:dead::1", ttl=123)
    resp = dns.message.from_wire(wire)
    assert resp.id == q.id and resp.flags & QR and resp.flags & RD and not resp.flags & AA
    (rrset,) = resp.answer
    assert rrset.rdtype == dns.rdatatype.AAAA and rrset.ttl == 123 and rrset[0].address == "2001:db8:dead::1"
    assert str(rrset.name) == "WWW.Blocked.Example."  # question copied verbatim (0x20 case preserved)
    custom = dns.message.from_wire(forged_response(parsed, "198.51.100.200", ttl=5, flags=QR | AA))
    assert custom.flags == QR | AA and custom.answer[0][0].address == "198.51.100.200"
    assert parse_query(wire) is None  # responses are not queries
    assert parse_query(b"\x00" * 5) is None


def test_domain_matcher_covers_subdomains_and_globs():
    m = DomainMatcher(["blocked.example", "*twitter*"])
    assert m.match("blocked.example") == "blocked.example"
    assert m.match("WWW.Blocked.Example.") == "blocked.example"
    assert m.match("notblocked.example") is None
    assert m.match("example") is None
    assert m.match("api.twitter.com") == "*twitter*"
    assert m.match(None) is None


def test_keyword_matching_is_case_insensitive_substring():
    assert match_keyword(("FaLun",), "/x/falungong") == "FaLun"
    assert match_keyword(("falun",), "/ok", None) is None
