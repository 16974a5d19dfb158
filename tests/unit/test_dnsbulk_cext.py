"""The C fast paths (probes/wire/_dnsbulk_c.c) equal their Python references on every input.

``echo_record``: equal means the same dict (same keys in the same order, same values and types) or None for both, on
dnspython-built replies of every usual and unusual shape, on each of them cut at every byte, with
random byte mutations, on random bytes, with wrong ids, another question and extended rcodes.
(``py_echo_record`` itself is checked against the general decoder in test_dnsbulk_codec.py.)
``decode_usual``: equals ``measure.dns_bulk.py_decode`` on finished names of usual and unusual replies,
and takes every usual one. ``wire_name``: equals ``py_wire_name``. ``round6``: equals ``round(t, 6)``.
"""

from __future__ import annotations

import math
import random
import struct

import dns.flags
import dns.message
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from censorscope.measure import dns_bulk
from censorscope.probes.wire import (
    _dnsbulk_c,  # not built: this file fails (and test_cext_built)
    dnsbulk,
    dnswire,
)

c_echo_record = _dnsbulk_c.echo_record

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=20)
names = st.lists(label, min_size=1, max_size=4).map(".".join)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0)))
ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: __import__("ipaddress").IPv6Address(b).compressed)
ttls = st.integers(0, 2**32 - 1)
times = st.one_of(st.floats(0, 1e6, allow_nan=False), st.integers(0, 10), st.just(0.0123456789))


def same(data: bytes, question: bytes, name: str, qid: int, t=0.5, source="127.0.0.1:53", ip_ttl=64) -> object:
    """Both implementations on one input; asserts they agree and returns the record (or None)."""
    py = dnsbulk.py_echo_record(data, question, name, qid, t, source, ip_ttl)
    c = c_echo_record(data, question, name, qid, t, source, ip_ttl)
    assert c == py
    if py is not None:
        assert list(c) == list(py) and list(map(type, c.values())) == list(map(type, py.values()))
        assert [list(a.items()) for a in c["answers"]] == [list(a.items()) for a in py["answers"]]
    return py


@st.composite
def replies(draw):
    """(reply bytes, our question section, our name, the reply's id) of a dnspython-built reply."""
    name = draw(names)
    qtype = draw(st.sampled_from(["A", "AAAA"]))
    q = dns.message.make_query(name, qtype, use_edns=draw(st.sampled_from([None, 0])))
    q.id = draw(st.integers(0, 65535))
    r = dns.message.make_response(q)
    r.set_rcode(draw(st.sampled_from([0, 0, 0, 1, 2, 3, 5, 9, 15, 16, 23])))  # 16+: extended (EDNS only)
    shape = draw(st.sampled_from(["a", "aaaa", "mixed", "cname", "none", "nxsoa"]))
    owner = name + "."
    if shape in ("a", "mixed"):
        for ip in draw(st.lists(ipv4, min_size=1, max_size=4)):
            r.answer.append(dns.rrset.from_text(owner, draw(ttls), "IN", "A", ip))
    if shape in ("aaaa", "mixed"):
        for ip in draw(st.lists(ipv6, min_size=1, max_size=3)):
            r.answer.append(dns.rrset.from_text(owner, draw(ttls), "IN", "AAAA", ip))
    if shape == "cname":  # a chain: the general decoder's case
        r.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME", "edge.cdn.test."))
        r.answer.append(dns.rrset.from_text("edge.cdn.test.", 60, "IN", "A", draw(ipv4)))
    if shape == "nxsoa":
        r.authority.append(dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. host.test. 1 3600 600 86400 60"))
    if draw(st.booleans()):
        r.authority.append(dns.rrset.from_text("test.", 60, "IN", "NS", "ns.test."))
        r.additional.append(dns.rrset.from_text("ns.test.", 60, "IN", "A", draw(ipv4)))
    r.flags |= draw(st.sampled_from([0, dns.flags.TC, dns.flags.AA | dns.flags.AD, dns.flags.CD, 0x0040]))
    try:
        data = r.to_wire()
    except Exception:  # an rcode dnspython cannot write without EDNS
        r.set_rcode(0)
        data = r.to_wire()
    if draw(st.booleans()):  # the 0x20 game: the server echoes another case (another question, byte for byte)
        data = data[:12] + data[12:].replace(name.encode(), name.swapcase().encode(), 1)
    question = dnswire.question_bytes(dnswire.encode_name(name), dnswire.qtype_code(qtype))
    return data, question, name, q.id


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies(), st.integers(0, 65535), times, st.sampled_from([None, 0, 64, 255]), st.booleans())
def test_valid_replies(reply, other_id, t, ip_ttl, same_id):
    data, question, name, qid = reply
    same(data, question, name, qid if same_id else other_id, t, "[::1]:53", ip_ttl)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies())
def test_cut_at_every_byte(reply):
    data, question, name, qid = reply
    for cut in range(len(data) + 1):
        same(data[:cut], question, name, qid)
    same(data + b"\x00" * 3, question, name, qid)  # trailing bytes


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies(), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=6))
def test_random_mutations(reply, edits):
    data, question, name, qid = reply
    damaged = bytearray(data)
    for where, value in edits:
        damaged[where % len(damaged)] = value
    same(bytes(damaged), question, name, qid)


@settings(max_examples=400, deadline=None)
@given(names, st.binary(max_size=300), st.integers(0, 65535), st.booleans())
def test_random_bytes(name, noise, qid, with_our_question):
    question = dnswire.question_bytes(dnswire.encode_name(name), 1)
    same(noise, question, name, qid)
    if with_our_question:  # a header and our question, then anything
        same(noise[:12].ljust(12, b"\x00") + question + noise[12:], question, name, qid)


def test_fixed_cases():
    """Hand-picked shapes: the usual one, wrong id, another question, extended rcode, pointer elsewhere."""
    q = dns.message.make_query("Case.Example", "A", use_edns=0)
    q.id = 4660
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("Case.Example.", 7, "IN", "A", "198.51.100.7"))
    data = r.to_wire()
    question = dnswire.question_bytes(dnswire.encode_name("Case.Example"), 1)
    record = same(data, question, "Case.Example", 4660)
    assert record["addresses"] == ["198.51.100.7"] and record["id_mismatch"] is False
    assert same(data, question, "Case.Example", 4661)["id_mismatch"] is True
    assert same(data, question, "Case.Example", 2**70)["id_mismatch"] is True  # any int compares
    other = dnswire.question_bytes(dnswire.encode_name("other.example"), 1)
    assert same(data, other, "other.example", 4660) is None
    r.set_rcode(16)  # BADVERS lives in the OPT record
    assert same(r.to_wire(), question, "Case.Example", 4660) is None
    moved = bytearray(data)
    moved[12 + len(question) + 1] = 0x0D  # the answer's owner points one byte past the question name
    assert same(bytes(moved), question, "Case.Example", 4660) is None
    assert same(b"", question, "Case.Example", 1) is None


def test_bad_arguments_raise():
    """Arguments of the wrong type raise TypeError (the C version is stricter: ``qid`` must be an int)."""
    with pytest.raises(TypeError):
        c_echo_record("not bytes", b"\x00\x00\x01\x00\x01", "x", 1, 0.1, "s", None)
    with pytest.raises(TypeError):
        c_echo_record(b"", b"", "x", 1, 0.1, "s")
    with pytest.raises(TypeError):
        c_echo_record(b"\x00" * 40, b"\x00\x00\x01\x00\x01", "x", "1", 0.1, "s", None)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab-_.Z09", max_size=80) | st.lists(st.integers(0, 70), max_size=6).map(
    lambda sizes: ".".join("x" * n for n in sizes)))
def test_wire_name(name):
    assert _dnsbulk_c.wire_name(name) == dnsbulk.py_wire_name(name)


TYPES = dns_bulk._types(("A", "AAAA"))


def _reply(name: str, code: int, qid: int, *, rcode: int = 0, ips=(), cname: bool = False) -> bytes:
    q = dns.message.make_query(name, dnswire.qtype_text(code), use_edns=0)
    q.id = qid
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if cname:
        r.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "CNAME", "edge.cdn.test."))
    for ip in ips:
        r.answer.append(dns.rrset.from_text(name + ".", 30, "IN", "AAAA" if ":" in ip else "A", ip))
    return r.to_wire()


def _datagram(draw, kind: str, name: str, code: int, qid: int) -> bytes:
    ip = draw(ipv4) if code == 1 else draw(ipv6)
    if kind == "ok":
        return _reply(name, code, qid, ips=[ip, ip][:draw(st.integers(1, 2))])
    if kind == "other_id":
        return _reply(name, code, (qid + 1) % 65536, ips=[ip])
    if kind == "nx":
        return _reply(name, code, qid, rcode=3)
    if kind == "empty":
        return _reply(name, code, qid)
    if kind == "other_type":
        return _reply(name, code, qid, ips=[draw(ipv6) if code == 1 else draw(ipv4)])
    if kind == "cname":
        return _reply(name, code, qid, cname=True)
    if kind == "cut":
        return _reply(name, code, qid, ips=[ip])[:-3]
    return b"\x00\x01garbage"


@st.composite
def finished_names(draw):
    """(RawResult, name, wire, usual?) as the engine hands a finished name to ``decode``."""
    name = draw(names)
    queries, usual = [], True
    for index in draw(st.sampled_from([[0], [1], [0, 1], [1, 0]])):
        code = TYPES[index][1]
        qid = draw(st.integers(0, 65535))
        later = st.sampled_from(["ok", "other_id", "nx", "empty", "other_type", "other_id", "nx", "cname", "garbage",
                                 "cut"])
        first = st.sampled_from(["ok"] * 12 + ["other_id", "nx", "empty", "other_type", "cname", "garbage", "cut"])
        kinds = draw(st.just([]) | st.tuples(first, st.lists(later, max_size=2)).map(lambda f: [f[0], *f[1]]))
        failure = draw(st.sampled_from([None] * 8 + ["connection_refused"]))
        datagrams = []
        for k, kind in enumerate(kinds):
            data = _datagram(draw, kind, name, code, qid)
            datagrams.append((data, draw(times), "127.0.0.1:53", draw(st.sampled_from([None, 64]))))
            usual &= kind in ("ok", "other_id", "nx", "empty", "other_type") and (k > 0 or kind == "ok")
        usual &= failure is None and bool(datagrams)
        icmp = [{"t": 0.1, "source": "127.0.0.1", "failure": "connection_refused", "icmp_type": 3,
                 "icmp_code": 3}] if draw(st.booleans()) else []
        queries.append((index, qid, draw(times), draw(times), failure, "send" if failure else None, datagrams, icmp))
    return (7, 1.7e9, 0.25, queries), name, dnswire.encode_name(name), usual


def _items(value):
    """A value with every dict as its list of items (so key order is compared too)."""
    if isinstance(value, dict):
        return [(k, _items(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [_items(v) for v in value]
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(finished_names())
def test_decode_usual_equals_the_python_decode(case):
    raw, name, wire, usual = case
    fast = _dnsbulk_c.decode_usual(raw, name, wire, TYPES, "127.0.0.1:53", 0.05)
    slow = dns_bulk.py_decode(raw, name, wire, TYPES, "127.0.0.1:53", 0.05)
    if usual:
        assert fast is not None
    if fast is not None:
        assert _items(fast) == _items(slow)
        assert dns_bulk.decode(raw, name, wire, TYPES, "127.0.0.1:53", 0.05) == fast
    else:
        assert dns_bulk.decode(raw, name, wire, TYPES, "127.0.0.1:53", 0.05) == slow


def test_decode_usual_declines_odd_input():
    """Anything but the engine's own RawResult shape is declined (None), never a crash."""
    wire = dnswire.encode_name("a.test")
    for raw in (None, (), (1, 2, 3, 4), (1, 2, 3, [None]), (1, 2, 3, [(0, 1, 0.0, 0.1, None, None, [], [])]),
                (1, 2, 3, [(9, 1, 0.0, 0.1, None, None, [(b"x", 0.1, "s", None)], [])]),
                (1, 2, 3, [(0, 1, 0.0, 0.1, None, None, [("str", 0.1, "s", None)], [])])):
        assert _dnsbulk_c.decode_usual(raw, "a.test", wire, TYPES, "r", 0.05) is None


def _same_round(x) -> None:
    got, want = _dnsbulk_c.round6(x), round(x, 6)
    assert type(got) is type(want)
    if isinstance(want, float) and want != want:  # NaN
        assert got != got
    else:
        assert got == want and math.copysign(1, got) == math.copysign(1, want)


@settings(max_examples=3000, deadline=None)
@given(st.floats() | st.floats(0, 1000) | st.integers(-10**20, 10**20)
       | st.tuples(st.integers(-10**9, 10**9), st.sampled_from([0.0, 1e-16, -1e-16, 1e-13, -1e-13, 1e-10]))
       .map(lambda kt: (kt[0] + 0.5) / 1e6 + kt[1]))  # at and around the ties
def test_round6_is_pythons_round(x):
    """The C fast path of round(t, 6) (every stored time goes through it) gives Python's value, sign and type."""
    _same_round(x)


def test_round6_on_the_bit_patterns_of_many_doubles():
    rnd = random.Random(6)
    for _ in range(200_000):
        _same_round(struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0])
