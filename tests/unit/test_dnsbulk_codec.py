"""The bulk engine's shortcuts give exactly the bytes and records of the general code.

``wire_name`` against ``dnswire.encode_name`` and dnspython's query wire form;
``echo_record`` (Python, and the C one: equal to it) against ``probes.dns.response_record`` on dnspython-built
responses (one or several answers, AAAA, CNAME chains, NXDOMAIN with an SOA,
truncation, wrong ids, extended rcodes) and on damaged ones; ``decode``
(a finished name's datagrams to observation dicts) against the probe's rules.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.measure import dns_bulk
from censorscope.probes import dns as dnsprobe
from censorscope.probes.wire import dnsbulk, dnswire

try:
    from censorscope.probes.wire._dnsbulk_c import echo_record as _c_echo_record
except ImportError:  # tests/unit/test_cext_built.py fails then
    _c_echo_record = None

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=63)
names = st.lists(label, min_size=1, max_size=5).map(".".join)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0)))


def _encode_or_none(name: str) -> bytes | None:
    try:
        return dnswire.encode_name(name)
    except ValueError:
        return None


@pytest.mark.parametrize("name", [
    "example.com", "a", "A-b_c.Example.ORG", "x" * 63 + ".test", "x" * 64 + ".test", "a..b", ".a", "a.",
    ".".join(["abcdefghi"] * 25), ".".join(["abcdefghi"] * 26), "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61,
    "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62,
])
def test_wire_name_is_encode_name_or_declines(name):
    fast = dnsbulk.wire_name(name)
    expected = _encode_or_none(name)
    if name.endswith("."):
        assert fast is None  # names with a final dot take the general path
    else:
        assert fast == expected


@settings(max_examples=300, deadline=None)
@given(names, st.integers(0, 65535), st.sampled_from(["A", "AAAA", "HTTPS"]))
def test_template_query_is_dnspythons_wire_form(name, qid, qtype):
    """The bulk engine's query (header template + pre-encoded name + fixed tail) is dnspython's query."""
    wire = dnsbulk.wire_name(name)
    assert wire == _encode_or_none(name)
    if wire is None:
        return
    ours = dnswire.build_query_fast(qid, dnswire.question_bytes(wire, dnswire.qtype_code(qtype)))
    theirs = dns.message.make_query(name, qtype, use_edns=0, payload=dnswire.EDNS_PAYLOAD)
    theirs.id = qid
    assert ours == theirs.to_wire()
    assert ours == dnswire.build_query(name, qtype, qid)


def _response(name: str, qtype: str, records, *, rcode: int = 0, qid: int = 7, edns: bool = True,
              authority=(), truncated: bool = False) -> tuple[bytes, bytes, int]:
    q = dns.message.make_query(name, qtype, use_edns=0 if edns else None)
    q.id = qid
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for rname, rtype, ttl, data in records:
        r.answer.append(dns.rrset.from_text(rname, ttl, "IN", rtype, data))
    for rname, rtype, ttl, data in authority:
        r.authority.append(dns.rrset.from_text(rname, ttl, "IN", rtype, data))
    if truncated:
        r.flags |= dns.flags.TC
    code = dnswire.qtype_code(qtype)
    return r.to_wire(), dnswire.question_bytes(dnswire.encode_name(name), code), code


def _both(data: bytes, question: bytes, name: str, code: int, our_id: int):
    """(the Python shortcut's record, the general code's); the C shortcut, when built, must equal the first."""
    fast = dnsbulk.py_echo_record(data, question, name, our_id, 0.0123456789, "127.0.0.1:53", 64)
    full = dnsprobe.response_record(data, 0.0123456789, "127.0.0.1:53", 64, our_id, name, code, question)
    if _c_echo_record is not None:
        c = _c_echo_record(data, question, name, our_id, 0.0123456789, "127.0.0.1:53", 64)
        assert c == fast and (c is None or list(c.items()) == list(fast.items()))
    return fast, full


SOA = ("test.", "SOA", 60, "ns.test. host.test. 1 3600 600 86400 60")


@pytest.mark.parametrize(("case", "usual"), [
    (("example.com", "A", [("example.com.", "A", 300, "198.51.100.7")]), True),
    (("example.com", "A", [("example.com.", "A", 300, "198.51.100.7"), ("example.com.", "A", 30, "203.0.113.9")]),
     True),
    (("v6.example", "AAAA", [("v6.example.", "AAAA", 20, "2001:db8::1")]), True),
    (("Mixed.Case.Example", "A", [("Mixed.Case.Example.", "A", 5, "198.51.100.1")]), True),
    (("www.example.org", "AAAA", [("www.example.org.", "CNAME", 60, "edge.cdn.test."),
                                  ("edge.cdn.test.", "AAAA", 20, "2001:db8::1")]), False),
    (("example.com", "TXT", [("example.com.", "TXT", 5, '"x"')]), False),
    (("nodata.test", "A", []), True),
])
def test_echo_record_equals_response_record(case, usual):
    name, qtype, records = case
    data, question, code = _response(name, qtype, records)
    for our_id in (7, 8):  # matching id, and a response carrying another id
        fast, full = _both(data, question, name, code, our_id)
        if usual:
            assert fast is not None and list(fast.items()) == list(full.items())
        else:
            assert fast is None  # the general path decides


def test_nxdomain_truncation_wrong_id_and_extended_rcode():
    data, question, code = _response("nx.test", "A", [], rcode=3, authority=[SOA])
    fast, full = _both(data, question, "nx.test", code, 7)
    assert fast == full and fast["rcode"] == "NXDOMAIN" and fast["answers"] == []

    data, question, code = _response("tc.test", "A", [("tc.test.", "A", 1, "198.51.100.2")], truncated=True,
                                     edns=False)
    fast, full = _both(data, question, "tc.test", code, 7)
    assert fast == full and "TC" in fast["flags"]
    for cut in range(12, len(data)):  # a datagram cut short anywhere: never a wrong record
        fast, full = _both(data[:cut], question, "tc.test", code, 7)
        assert fast is None or fast == full

    data, question, code = _response("id.test", "A", [("id.test.", "A", 1, "198.51.100.3")], qid=99)
    fast, full = _both(data, question, "id.test", code, 98)
    assert fast == full and fast["id_mismatch"] is True

    q = dns.message.make_query("ext.test", "A", use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(16)  # BADVERS: the extended rcode lives in the OPT record
    question = dnswire.question_bytes(dnswire.encode_name("ext.test"), 1)
    assert dnsbulk.echo_record(r.to_wire(), question, "ext.test", q.id, 0.1, "x", None) is None
    other = dnswire.question_bytes(dnswire.encode_name("other.test"), 1)
    assert dnsbulk.echo_record(data, other, "other.test", 99, 0.1, "x", None) is None  # another question


@settings(max_examples=300, deadline=None)
@given(names, st.lists(st.tuples(ipv4, st.integers(0, 2**31 - 1)), max_size=4), st.sampled_from([0, 2, 3, 5]),
       st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=3), st.integers(0, 90), st.booleans())
def test_echo_record_never_differs_on_good_or_damaged_responses(name, records, rcode, qid, our_id, patch, where,
                                                               edns):
    data, question, code = _response(name, "A", [(name + ".", "A", ttl, ip) for ip, ttl in records],
                                     rcode=rcode, qid=qid, edns=edns)
    where = min(where, len(data))
    damaged = data[:where] + patch + data[where + len(patch):]
    for sample in (data, damaged, data + b"\x00\x01"):
        fast, full = _both(sample, question, name, code, our_id)
        if fast is not None:
            assert list(fast.items()) == list(full.items())
    assert _both(data, question, name, code, our_id)[0] is not None  # undamaged: always the shortcut


TYPES = dns_bulk._types(("A", "AAAA"))


def _raw(name: str, queries):
    return (name, 1.7e9, 0.25, queries)


def test_decode_several_responses_per_query_in_arrival_order():
    """An injected answer first, the real one later: both recorded; the first valid one decides."""
    forged, question, _ = _response("site.test", "A", [("site.test.", "A", 9, "203.0.113.66")], qid=4242)
    real, _, _ = _response("site.test", "A", [("site.test.", "A", 300, "198.51.100.7")], qid=4242)
    stray_id, _, _ = _response("site.test", "A", [("site.test.", "A", 300, "203.0.113.1")], qid=1)
    wire = dnswire.encode_name("site.test")
    raw = _raw("site.test", [(0, 4242, 0.0000012, 0.35, None, None,
                              [(stray_id, 0.001, "127.0.0.1:9", 61), (forged, 0.0021, "127.0.0.1:5353", 60),
                               (real, 0.05, "127.0.0.1:53", 64)], [])])
    name, [obs], start, runtime = dns_bulk.decode(raw, "site.test", wire, TYPES, "127.0.0.1:53", 0.3)
    assert (name, start, runtime) == ("site.test", 1.7e9, 0.25)
    assert [r["addresses"] for r in obs["responses"]] == [["203.0.113.1"], ["203.0.113.66"], ["198.51.100.7"]]
    assert [r["id_mismatch"] for r in obs["responses"]] == [True, False, False]
    assert obs["failure"] is None and obs["addresses"] == ["203.0.113.66"]
    assert (obs["t0"], obs["t"], obs["hold_window"]) == (0.000001, 0.35, 0.3)
    expected = [dnsprobe.response_record(d, t, s, ttl, 4242, "site.test", 1, question)
                for d, t, s, ttl in raw[3][0][6]]
    assert obs["responses"] == expected
    assert list(obs) == ["id", "operation", "parent_id", "t0", "t", "failure", "query_name", "query_type",
                         "transport", "resolver", "query_id", "hold_window", "responses", "addresses",
                         "icmp_errors", "failed_step"]


@pytest.mark.parametrize(("rcode", "records", "failure"), [
    (3, [], "dns_nxdomain_error"), (2, [], "dns_servfail_error"), (5, [], "dns_refused_error"),
    (0, [], "dns_no_answer"), (0, [("x.test.", "AAAA", 5, "2001:db8::2")], "dns_no_answer"),
])
def test_decode_failures_follow_the_probe(rcode, records, failure):
    data, _question, _ = _response("x.test", "A", records, rcode=rcode, qid=5)
    raw = _raw("x.test", [(0, 5, 0.0, 0.1, None, None, [(data, 0.01, "127.0.0.1:53", 64)], [])])
    [obs] = dns_bulk.decode(raw, "x.test", dnswire.encode_name("x.test"), TYPES, "127.0.0.1:53", 0.1)[1]
    expected = dnsprobe.outcome(obs["responses"], [], "A")
    assert (obs["failure"], obs["addresses"]) == expected and obs["failure"] == failure
    assert obs["failed_step"] is None


def test_decode_timeouts_icmp_send_errors_and_two_types():
    icmp = [{"t": 0.001, "source": "127.0.0.1", "failure": "connection_refused", "icmp_type": 3, "icmp_code": 3}]
    raw = _raw("y.test", [
        (1, 9, 0.0, 5.0, None, None, [], []),
        (0, 8, 0.0, 0.2, None, None, [], icmp),
    ])
    first, second = dns_bulk.decode(raw, "y.test", dnswire.encode_name("y.test"), TYPES, "127.0.0.1:53", 0.1)[1]
    assert (first["id"], first["query_type"], first["failure"], first["failed_step"]) == (
        1, "AAAA", "generic_timeout_error", "receive")
    assert (second["id"], second["query_type"], second["failure"], second["icmp_errors"]) == (
        2, "A", "connection_refused", icmp)
    sent = _raw("z.test", [(0, 3, 0.0, 0.0, "network_unreachable", "send", [], [])])
    [obs] = dns_bulk.decode(sent, "z.test", dnswire.encode_name("z.test"), TYPES, "127.0.0.1:53", 0.1)[1]
    assert (obs["failure"], obs["failed_step"], obs["addresses"]) == ("network_unreachable", "send", [])


def test_decode_keeps_unparseable_datagrams():
    raw = _raw("g.test", [(0, 1, 0.0, 0.1, None, None, [(b"\x00\x01garbage", 0.01, "127.0.0.1:53", 64)], [])])
    [obs] = dns_bulk.decode(raw, "g.test", dnswire.encode_name("g.test"), TYPES, "127.0.0.1:53", 0.1)[1]
    [r] = obs["responses"]
    assert r["parse_error"] and r["raw_b64"] and obs["failure"] == "dns_server_misbehaving"


def test_remembered_tails_never_change_a_verdict():
    """``_rest_ok_memo`` remembers accepted one-record tails; a rejected tail is checked every time."""
    good, question, code = _response("memo.test", "A", [("memo.test.", "A", 5, "198.51.100.8")], qid=3)
    q = dns.message.make_query("memo.test", "A", use_edns=0)
    q.id = 3
    r = dns.message.make_response(q)
    r.set_rcode(16)  # BADVERS: an OPT record with an extended rcode, a tail that must stay rejected
    bad = r.to_wire()
    dnsbulk._GOOD_TAILS.clear()
    for _ in range(3):  # in any order, as often as they come: the same records as the general code
        for data in (good, bad):
            fast, full = _both(data, question, "memo.test", code, 3)
            assert fast is None if data is bad else list(fast.items()) == list(full.items())
    assert dnsbulk._GOOD_TAILS == {good[-11:]}  # only the accepted OPT record is remembered
    for i in range(300):  # varied tails: the memory stays bounded
        tail = bytes([0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 2]) + i.to_bytes(2, "big")
        assert dnsbulk._rest_ok_memo(tail, 0, 1, len(tail)) == dnsbulk._rest_ok(tail, 0, 1, len(tail))
        assert len(dnsbulk._GOOD_TAILS) <= 256
