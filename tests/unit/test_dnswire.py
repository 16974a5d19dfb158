"""The sans-IO DNS codec: byte fixtures, agreement with dnspython, and fuzzing."""

from __future__ import annotations

import dns.message
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import dnswire

# Hand-assembled response: id 0xabcd, QR RD RA, example.com A, one answer by pointer to the question.
EXAMPLE_A = bytes.fromhex(
    "abcd81800001000100000000"
    "076578616d706c6503636f6d0000010001"
    "c00c000100010000012c00045db8d822"
)
# NXDOMAIN with an SOA in authority (names compressed), id 7, QR AA RD RA.
NXDOMAIN_SOA = bytes.fromhex(
    "000785830001000000010000"
    "036e6f7804746573740000010001"            # nox.test A IN ("test" at offset 16)
    "c010000600010000003c0020"                # test SOA IN ttl 60, rdlength 32
    "026e73c010" "04686f7374c010"             # ns.test host.test
    "00000001" "00000e10" "00000258" "00015180" "0000003c"
)


def test_build_query_bytes():
    wire = dnswire.build_query("example.com", "A", 0x1234)
    assert wire == bytes.fromhex(
        "123401000001000000000001"
        "076578616d706c6503636f6d0000010001"
        "00002904d0000000000000"
    )
    no_edns = dnswire.build_query("Example.COM.", "AAAA", 1, edns=False, rd=False)
    assert no_edns == bytes.fromhex("000100000001000000000000074578616d706c6503434f4d00001c0001")


def test_build_query_is_what_dnspython_reads():
    msg = dns.message.from_wire(dnswire.build_query("a-b.c_d.example", "HTTPS", 65535))
    assert msg.id == 65535
    assert msg.question[0].name.to_text() == "a-b.c_d.example."
    assert msg.question[0].rdtype == 65
    assert msg.edns == 0 and msg.payload == dnswire.EDNS_PAYLOAD


@pytest.mark.parametrize("bad", ["a..b", "x" * 64 + ".com", ".".join(["abcdefghi"] * 30), "bücher.de"])
def test_encode_name_rejects(bad):
    with pytest.raises(ValueError):
        dnswire.encode_name(bad)


def test_encode_root():
    assert dnswire.encode_name(".") == b"\x00"


def test_parse_fixture_a():
    m = dnswire.parse(EXAMPLE_A)
    assert m.parser == "fast"
    assert (m.id, m.rcode, m.qname, m.qtype, m.size) == (0xABCD, 0, "example.com", 1, len(EXAMPLE_A))
    assert dnswire.flags_text(m.flags) == ["QR", "RD", "RA"]
    assert m.answers == [{"name": "example.com", "type": "A", "ttl": 300, "data": "93.184.216.34"}]


def test_parse_fixture_nxdomain_skips_authority():
    m = dnswire.parse(NXDOMAIN_SOA)
    assert m.parser == "fast"
    assert dnswire.rcode_text(m.rcode) == "NXDOMAIN"
    assert dnswire.flags_text(m.flags) == ["QR", "AA", "RD", "RA"]
    assert m.qname == "nox.test" and m.answers == []


def _response(name: str, qtype: str, records: list[tuple[str, str, int, str]], rcode: int = 0) -> bytes:
    q = dns.message.make_query(name, qtype, use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for rname, rtype, ttl, data in records:
        r.answer.append(dns.rrset.from_text(rname, ttl, "IN", rtype, data))
    return r.to_wire()


def test_parse_cname_chain_and_aaaa():
    wire = _response("www.example.org", "AAAA", [
        ("www.example.org.", "CNAME", 60, "edge.cdn.test."),
        ("edge.cdn.test.", "AAAA", 20, "2001:db8::1"),
        ("edge.cdn.test.", "AAAA", 21, "2001:db8:0:0:0:0:0:2"),
    ])
    m = dnswire.parse(wire)
    assert m.parser == "fast"
    assert m.answers == [
        {"name": "www.example.org", "type": "CNAME", "ttl": 60, "data": "edge.cdn.test"},
        {"name": "edge.cdn.test", "type": "AAAA", "ttl": 20, "data": "2001:db8::1"},
        {"name": "edge.cdn.test", "type": "AAAA", "ttl": 21, "data": "2001:db8::2"},
    ]


def test_unusual_answers_fall_back_to_dnspython():
    wire = _response("example.com", "TXT", [("example.com.", "TXT", 5, '"hello world"')])
    m = dnswire.parse(wire)
    assert m.parser == "dnspython"
    assert m.answers == [{"name": "example.com", "type": "TXT", "ttl": 5, "data": '"hello world"'}]


def test_odd_label_bytes_fall_back_and_are_escaped():
    wire = _response("we ird.example", "A", [("we ird.example.", "A", 1, "198.51.100.1")])
    m = dnswire.parse(wire)
    assert m.parser == "dnspython"
    assert m.qname == "we\\032ird.example"
    assert m.answers[0]["data"] == "198.51.100.1"


def test_extended_rcode_needs_dnspython():
    q = dns.message.make_query("example.com", "A", use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(16)  # BADVERS lives in the OPT record
    m = dnswire.parse(r.to_wire())
    assert m.parser == "dnspython" and dnswire.rcode_text(m.rcode) == "BADVERS"


@pytest.mark.parametrize("bad", [
    b"",
    b"\x00" * 11,
    EXAMPLE_A[:20],                                            # question cut short
    EXAMPLE_A[:12] + b"\xc0\x0c" + EXAMPLE_A[-20:],            # question name points at itself
    bytes.fromhex("0001818000010000000000000140c00c00010001"),  # label length 64 and a forward pointer
])
def test_garbage_raises_parse_error(bad):
    with pytest.raises(dnswire.ParseError):
        dnswire.parse(bad)


def test_trailing_bytes_are_tolerated():
    assert dnswire.parse(EXAMPLE_A + b"junk").answers[0]["data"] == "93.184.216.34"


def test_vocabularies_round_trip():
    assert dnswire.qtype_code("aaaa") == 28 and dnswire.qtype_text(28) == "AAAA"
    assert dnswire.qtype_text(dnswire.qtype_code("TYPE999")) == "TYPE999"
    for code in range(0, 11):
        assert dnswire.rcode_code(dnswire.rcode_text(code)) == code
    assert dnswire.rcode_code("12") == 12
    with pytest.raises(ValueError):
        dnswire.qtype_code("NOPE")


# --- fuzzing ------------------------------------------------------------------------

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
names = st.lists(label, min_size=1, max_size=4).map(".".join)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(data):
    try:
        m = dnswire.parse(data)
    except dnswire.ParseError:
        return
    assert isinstance(m.answers, list) and m.size == len(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=8), st.integers(0, 55), st.data())
def test_mutated_responses_never_crash(patch, where, data):
    base = data.draw(st.sampled_from([EXAMPLE_A, NXDOMAIN_SOA]))
    where = min(where, len(base))
    mutated = base[:where] + patch + base[where + len(patch):]
    try:
        dnswire.parse(mutated)
    except dnswire.ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(names, st.lists(st.tuples(ipv4, st.integers(0, 2**31 - 1)), max_size=5), st.sampled_from([0, 2, 3, 5]),
       st.integers(0, 65535))
def test_fast_path_agrees_with_dnspython(name, records, rcode, qid):
    q = dns.message.make_query(name, "A", use_edns=0)
    q.id = qid
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for ip, ttl in records:
        r.answer.append(dns.rrset.from_text(name + ".", ttl, "IN", "A", ip))
    wire = r.to_wire()
    fast = dnswire.parse(wire)
    slow = dnswire._slow(wire)
    assert fast.parser == "fast"
    for attr in ("id", "flags", "rcode", "qname", "qtype", "answers", "size"):
        assert getattr(fast, attr) == getattr(slow, attr), attr


# --- parse_echo: the bulk engine's shortcut must give exactly what parse gives ----------------

def _echo_case(name: str, qtype: str, records: list[tuple[str, str, int, str]], rcode: int = 0, qid: int = 7):
    q = dns.message.make_query(name, qtype, use_edns=0)
    q.id = qid
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for rname, rtype, ttl, data in records:
        r.answer.append(dns.rrset.from_text(rname, ttl, "IN", rtype, data))
    code = dnswire.qtype_code(qtype)
    return r.to_wire(), dnswire.question_bytes(dnswire.encode_name(name), code), code


@pytest.mark.parametrize("case", [
    ("example.com", "A", [("example.com.", "A", 300, "93.184.216.34")], 0),
    ("www.example.org", "AAAA", [("www.example.org.", "CNAME", 60, "edge.cdn.test."),
                                 ("edge.cdn.test.", "AAAA", 20, "2001:db8::1")], 0),
    ("nx.example", "A", [], 3),
])
def test_parse_echo_matches_parse(case):
    name, qtype, records, rcode = case
    wire, question, code = _echo_case(name, qtype, records, rcode, qid=0x4242)
    full = dnswire.parse(wire, (question, name, code))
    assert dnswire.parse_echo(wire, question, name) == (full.id, full.flags, full.answers)
    assert full.rcode == rcode


def test_parse_echo_declines_what_it_cannot_vouch_for():
    wire, question, _code = _echo_case("example.com", "A", [("example.com.", "A", 300, "93.184.216.34")])
    other = dnswire.question_bytes(dnswire.encode_name("example.net"), 1)
    assert dnswire.parse_echo(wire, other, "example.net") is None  # another question
    assert dnswire.parse_echo(wire[:-3], question, "example.com") is None  # cut short
    assert dnswire.parse_echo(wire[:11], question, "example.com") is None  # not even a header
    txt, tq, _ = _echo_case("example.com", "TXT", [("example.com.", "TXT", 5, '"x"')])
    assert dnswire.parse_echo(txt, tq, "example.com") is None  # answer type for dnspython
    q = dns.message.make_query("example.com", "A", use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(16)  # extended rcode in the OPT record
    assert dnswire.parse_echo(r.to_wire(), question, "example.com") is None


@settings(max_examples=200, deadline=None)
@given(names, st.lists(st.tuples(ipv4, st.integers(0, 2**31 - 1)), max_size=4), st.sampled_from([0, 2, 3, 5]),
       st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=3), st.integers(0, 80))
def test_response_record_shortcut_is_invisible(name, records, rcode, qid, our_id, patch, where):
    """The stored record is the same with and without ``parse_echo``, for good and damaged responses."""
    from censorscope.probes import dns as dnsprobe

    wire, question, code = _echo_case(name, "A", [(name + ".", "A", ttl, ip) for ip, ttl in records], rcode, qid)
    where = min(where, len(wire))
    damaged = wire[:where] + patch + wire[where + len(patch):]
    for data in (wire, damaged):
        fast = dnsprobe.response_record(data, 0.5, "127.0.0.1:53", 64, our_id, name, code, question)
        real = dnswire.parse_echo
        dnswire.parse_echo = lambda *args: None
        try:
            slow = dnsprobe.response_record(data, 0.5, "127.0.0.1:53", 64, our_id, name, code, question)
        finally:
            dnswire.parse_echo = real
        assert list(fast.items()) == list(slow.items())
