"""The verdict engine's fast paths give the same answers as the straightforward code they replace."""

from __future__ import annotations

import copy
import datetime as dt
import gc
import importlib.util
import random
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.analysis.verdicts import dns, verdicts
from censorscope.analysis.verdicts.combine import ResidualTracker, combine_attempts, event_time, group_key
from censorscope.analysis.verdicts.context import Context, leaf_sha256, verified_for_name
from censorscope.analysis.verdicts.core import (
    Measurement,
    Verdict,
    address_of,
    blocked,
    find_control,
    host_of,
    ip_of,
    parse_time,
)
from censorscope.analysis.verdicts.engine import _fewer_gc_passes, _judge_one, judge_batch
from censorscope.analysis.verdicts.tls import control_handshakes, judge_handshake
from censorscope.analysis.verdicts.web import _spanning, address_checks


def _random_measurement(rng: random.Random) -> Measurement:
    n = rng.randrange(1, 9)
    obs = []
    for i in range(1, n + 1):
        parent = rng.choice([None, *range(1, n + 2)])  # dangling ids, self-references and cycles too
        obs.append({"id": i, "operation": rng.choice(["dns_query", "connect", "tls_handshake", "http_round_trip"]),
                    "parent_id": parent})
    return Measurement({"measurement_id": "x", "probe": "web", "input": "https://a.example/", "observations": obs})


def test_descends_from_matches_the_ancestor_walk() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        m = _random_measurement(rng)
        for o in m.observations:
            for p in m.observations:
                assert m.descends_from(o, p) == any(a is p for a in m.ancestors(o))


def test_ops_are_indexed_in_order_and_copies() -> None:
    m = _random_measurement(random.Random(2))
    for op in ("dns_query", "connect", "tls_handshake", "http_round_trip", "absent"):
        assert m.ops(op) == [o for o in m.observations if o.get("operation") == op]
    got = m.ops("connect")
    got.append({"operation": "connect"})  # a caller changing its list changes nothing else
    assert m.ops("connect") == [o for o in m.observations if o.get("operation") == "connect"]
    assert m.control_ops("connect") == [] and m.control_state == "missing"


def test_host_of_cached_urls() -> None:
    assert host_of("https://Site.Example:8443/x") == "site.example"
    assert host_of("https://[2001:db8::1]/") == "2001:db8::1"
    assert host_of("203.0.113.5:443") == "203.0.113.5"
    assert host_of("") is None


def test_gc_paused_and_restored_even_on_error() -> None:
    assert gc.isenabled()
    before = gc.get_threshold()
    try:
        with _fewer_gc_passes():
            assert not gc.isenabled()
            with _fewer_gc_passes():  # nested batches share one pause
                pass
            assert not gc.isenabled()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled() and gc.get_threshold() == before
    judge_batch([{"measurement_id": "a", "probe": "nope"}])
    assert gc.isenabled() and gc.get_threshold() == before
    gc.disable()  # a caller that disabled the collector keeps it disabled
    try:
        judge_batch([{"measurement_id": "a", "probe": "nope"}])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_empty_and_mixed_tables_keep_their_types() -> None:
    empty = verdicts([])
    assert len(empty) == 0 and str(empty["confidence"].dtype) == "object"
    df = verdicts([{"measurement_id": "a", "probe": "nope", "vantage": {"asn": 64496}}])
    assert df["vantage_asn"].tolist() == [64496] and df["vantage_cc"].tolist() == [None]
    assert df["method"].tolist() == [None] and df["confidence"].dtype == float


# --- the engine's hot paths against the straightforward code they replace -----------------------
# The corpus: the golden batch (bench records and their variants), mutated copies that reach
# rarer branches, and measurements from one vantage close in time on shared servers (residual
# censorship). Each test below recomputes something the straightforward way and compares.

def _golden() -> Any:
    spec = importlib.util.spec_from_file_location("_golden_for_fast_paths",
                                                  Path(__file__).with_name("test_verdicts_golden.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_FAILS = [None, None, "connection_reset", "generic_timeout_error", "connection_refused", "eof_error",
          "dns_nxdomain_error", "generic_timeout_error", "weird"]
_ADDRS = ["203.0.113.100", "203.0.113.101", "198.51.100.77", "127.0.0.1", "2001:db8::5"]


def _mutate(rec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    r = copy.deepcopy(rec)
    for _ in range(rng.randrange(1, 4)):
        lists = [r["observations"]] + ([r["control"]["observations"]] if isinstance(r.get("control"), dict)
                                       and r["control"].get("observations") else [])
        ol = rng.choice(lists)
        if not ol:
            continue
        o = rng.choice(ol)
        k = rng.randrange(9)
        if k == 0:
            o["failure"] = rng.choice(_FAILS)
        elif k == 1 and o["operation"] == "dns_query":
            o["addresses"] = rng.sample(_ADDRS, rng.randrange(0, 3))
        elif k == 2 and "ip" in o:
            ip = rng.choice(_ADDRS)
            o["ip"], o["address"] = ip, (f"[{ip}]:443" if ":" in ip else f"{ip}:443")
        elif k == 3 and o["operation"] == "tls_handshake":
            o["verification"] = rng.choice([None, {"ok": False, "hostname_ok": False}, {"ok": True}])
            o["peer_certificates"] = [{"sha256": rng.choice(["ab" * 32, "cd" * 32]), "issuer": rng.choice("XY")}]
        elif k == 4 and o["operation"] == "tls_handshake":
            o["server_name"] = rng.choice([None, "innocuous.example", o.get("server_name")])
        elif k == 5:
            ol.append(dict(copy.deepcopy(o), id=rng.randrange(1, 9), failure=rng.choice(_FAILS)))
        elif k == 6:
            ol.remove(o)
        elif k == 7:
            o["parent_id"] = rng.choice([None, 1, 2, 3, 9])
        else:
            r["probe"] = rng.choice(["web", "dns", "tcp", "tls", "system"])
    return r


def _corpus() -> list[dict[str, Any]]:
    rng = random.Random(11)
    base = _golden().golden_records()
    out = list(base)
    for i in range(1500):
        r = _mutate(rng.choice(base), rng)
        r["measurement_id"] = f"mut{i}"
        if i % 10 == 0:  # the control saw the same certificate, which does not verify
            for o in r["observations"] + ((r.get("control") or {}).get("observations") or []):
                if o["operation"] == "tls_handshake":
                    o["verification"], o["peer_certificates"] = {"ok": False}, [{"sha256": "ef" * 32}]
                    o["server_name"] = f"cdn{i}.example"
        out.append(r)
    for j in range(300):  # one vantage and run, 17 s apart, two shared servers: residual windows overlap
        r = copy.deepcopy(rng.choice(base[:700]))
        r["measurement_id"], r["run_id"], r["vantage"] = f"res{j}", "R", {"cc": "ZZ", "asn": "AS1"}
        r["measurement_start_time"] = f"2026-10-01T00:{(j * 17 // 60) % 60:02d}:{(j * 17) % 60:02d}.000000Z"
        ip = rng.choice(["203.0.113.100", "203.0.113.101"])
        for ol in (r["observations"], (r.get("control") or {}).get("observations") or []):
            for o in ol:
                if o["operation"] != "dns_query":
                    o["address"], o["ip"] = ip + ":443", ip
        if rng.random() < 0.2:
            r["annotations"], r["attempt"] = {"confirms": f"res{max(0, j - 1)}"}, 1
        out.append(r)
    return out


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    return _corpus()


def _key(v: Verdict) -> tuple[Any, ...]:
    return (v.verdict, v.method, v.confidence, v.evidence, v.endpoint, v.self_controlled, v.at, v.endpoints)


def _reference_judge_batch(records: list[dict[str, Any]]) -> list[tuple[Measurement, Verdict]]:
    """The engine loop before its fast paths: every verdict through the residual tracker in time
    order, every group sorted and combined."""
    ms = [Measurement(r) for r in records]
    ctx = Context(ms)
    tracker = ResidualTracker()
    single = {id(m): _judge_one(m, ctx) for m in ms}
    for m in sorted(ms, key=lambda x: event_time(x, single[id(x)]) or 0.0):
        single[id(m)] = tracker.check(m, single[id(m)])
    by: dict[str, list[Measurement]] = {}
    for m in ms:
        by.setdefault(group_key(m), []).append(m)
    gs = sorted([sorted(g, key=lambda m: (m.confirms is not None, m.attempt, m.start or 0.0)) for g in by.values()],
                key=lambda g: min((m.start or 0.0) for m in g))
    return [(g[0], combine_attempts(g, [single[id(m)] for m in g])) for g in gs]


def test_judge_batch_equals_the_straightforward_loop(corpus: list[dict[str, Any]]) -> None:
    got = judge_batch(corpus)
    want = _reference_judge_batch(corpus)
    assert [(m.id, _key(v)) for m, v in got] == [(m.id, _key(v)) for m, v in want]
    methods = {v.method for _, v in got}
    assert "residual" in methods and len(methods) >= 6  # the corpus reaches residual state and many methods


def test_residual_tracker_passes_unblocked_verdicts_through() -> None:
    """What the engine's filter relies on: check() returns a verdict that is not blocked unchanged
    and remembers nothing about it."""
    tracker = ResidualTracker()
    m = Measurement({"measurement_id": "a", "probe": "tls", "input": "https://a.example/",
                     "measurement_start_time": "2026-10-01T00:00:00Z", "observations": []})
    for v in (Verdict("ok", None, 0.9, "x", "203.0.113.1:443", at=0.1),
              Verdict("inconclusive", "tls.sni_reset", 0.5, "y", "203.0.113.1:443", at=0.1),
              Verdict("down", None, 0.7, "z", "203.0.113.1:443")):
        assert tracker.check(m, v) is v
    assert tracker._last == {}


def test_web_tls_shortcut_is_an_ok_judgement(corpus: list[dict[str, Any]]) -> None:
    """web.rule skips judging handshakes when one verifies and the control made one: judge_handshake
    calls exactly those ok (with the control present, as it is where web.rule asks)."""
    seen = 0
    for m in (Measurement(r) for r in corpus):
        if m.control_state != "present":
            continue
        for h in m.ops("tls_handshake"):
            if not h.get("failure") and verified_for_name(h) and control_handshakes(m, h):
                assert judge_handshake(m, h).verdict == "ok"
                seen += 1
    assert seen > 1000


def test_lazy_address_checks_equal_eager_ones(corpus: list[dict[str, Any]]) -> None:
    ms = [Measurement(r) for r in corpus]
    ctx = Context(ms)
    calls = 0
    for m in ms:
        for q in m.ops("dns_query") + m.ops("resolve"):
            def lazy(m: Measurement = m) -> dns.Checks:
                nonlocal calls
                calls += 1
                return address_checks(m)

            assert _key(dns.judge(m, q, ctx, lazy)) == _key(dns.judge(m, q, ctx, address_checks(m)))
    assert calls > 100  # differing answers reached the checks


def test_views_and_lazy_control_index(corpus: list[dict[str, Any]]) -> None:
    for r in corpus[:3000]:
        m = Measurement(r)
        for op in ("dns_query", "resolve", "connect", "tls_handshake", "http_round_trip", "absent"):
            assert m.ops_view(op) == m.ops(op) == [o for o in m.observations if o.get("operation") == op]
            assert m.control_ops_view(op) == m.control_ops(op) == [
                o for o in m.control_observations if o.get("operation") == op]


def test_find_control_equals_generic_matching(corpus: list[dict[str, Any]]) -> None:
    def reference(m: Measurement, operation: str, **match: Any) -> list[dict[str, Any]]:
        want = {k: v for k, v in match.items() if v is not None}
        return [o for o in m.control_ops(operation)
                if all((address_of(o) if k == "address" else o.get(k)) == v for k, v in want.items())]

    for r in corpus[::3]:
        m = Measurement(r)
        for o in m.observations:
            for match in ({"address": address_of(o)}, {"address": address_of(o), "server_name": o.get("server_name")},
                          {"address": None}, {"failure": None, "proto": "tcp"}):
                assert find_control(m, str(o.get("operation")), **match) == reference(
                    m, str(o.get("operation")), **match)


def test_validated_addresses_equal_the_straightforward_scan(corpus: list[dict[str, Any]]) -> None:
    ms = [Measurement(r) for r in corpus]
    want: dict[str, dict[str, str]] = {}
    for m in ms:
        leaves: dict[str, set[str]] = {}
        for hs in m.control_ops("tls_handshake"):
            if leaf_sha256(hs) and not hs.get("failure"):
                leaves.setdefault(str(hs.get("server_name") or "").lower(), set()).add(leaf_sha256(hs))
        for hs in m.ops("tls_handshake"):
            name, ip = str(hs.get("server_name") or "").lower(), ip_of(address_of(hs))
            if hs.get("failure") or not name or not ip:
                continue
            if verified_for_name(hs):
                want.setdefault(name, {}).setdefault(ip, f"{m.probe} measurement {m.id}: certificate valid for {name}")
            elif leaf_sha256(hs) and leaf_sha256(hs) in leaves.get(name, set()):
                want.setdefault(name, {}).setdefault(
                    ip, f"{m.probe} measurement {m.id}: same certificate as the control for {name}")
    assert dict(Context(ms)._validated) == want and any("same certificate" in w for d in want.values()
                                                           for w in d.values())


def test_spanning_shortcut_equals_replace() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        vs = [blocked(rng.choice(["tcp.blackhole", "tls.sni_reset"]), 0.8, "e", endpoint=rng.choice(
            ["203.0.113.1:443", "203.0.113.2:443", None]), at=rng.choice([None, 0, 0.0, 0.5, 1]))
            for _ in range(rng.randrange(1, 4))]
        v = rng.choice(vs)
        same = [x for x in vs if x.verdict == v.verdict and x.method == v.method and x.endpoint]
        want = v
        if same:
            times = [x.at for x in same if x.at is not None]
            want = replace(v, endpoints=tuple(dict.fromkeys([*v.endpoints, *(x.endpoint for x in same)])),
                           at=min(times) if times else v.at)
        got = _spanning(v, vs)
        assert got == want and type(got.at) is type(want.at)


def test_verdict_init_is_the_dataclass_contract() -> None:
    v = Verdict("blocked", "tcp.reset", 0.8, "e", "203.0.113.1:443", True, 0.5, ("203.0.113.1:443",))
    assert [getattr(v, f.name) for f in fields(Verdict)] == [
        "blocked", "tcp.reset", 0.8, "e", "203.0.113.1:443", True, 0.5, ("203.0.113.1:443",)]
    assert Verdict("ok") == Verdict(verdict="ok", method=None, confidence=0.0, evidence="", endpoint=None,
                                    self_controlled=False, at=None, endpoints=())
    assert hash(Verdict("ok", evidence="a")) == hash(Verdict("ok", evidence="a"))
    assert replace(v, evidence="f").evidence == "f" and replace(v, evidence="f").method == "tcp.reset"
    with pytest.raises(FrozenInstanceError):
        v.verdict = "ok"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Verdict("maybe")
    with pytest.raises(ValueError):
        Verdict("blocked", None, 0.9)


def test_null_annotations_are_no_annotations(corpus: list[dict[str, Any]]) -> None:
    """``"annotations": null`` judges like ``{}`` (it used to raise in the engine's probe-error check)."""
    recs = [dict(r, annotations={}) for r in corpus[:400]]
    nulls = [dict(r, annotations=None) for r in recs]
    assert [_key(v) for _, v in judge_batch(nulls)] == [_key(v) for _, v in judge_batch(recs)]


def test_batch_facts_gathered_only_when_asked(corpus: list[dict[str, Any]]) -> None:
    """Judging measurements whose DNS matches the control never scans the batch; asking does, once."""
    def ok_site(r: dict[str, Any]) -> bool:  # bench/analysis_1m.py: sites 0, 1, 2 mod 7 work
        return int(r["input"].split("site")[1].split(".")[0]) % 7 < 3

    ms = [Measurement(r) for r in corpus[:3000] if ok_site(r)][:400]
    ctx = Context(ms)
    for m in ms:
        assert _judge_one(m, ctx).verdict == "ok"
    assert ctx._facts is None
    name = ms[0].host
    ip = ip_of(address_of(ms[0].ops("tls_handshake")[0]))
    assert ctx.validated(name, ip) == f"web measurement {ms[0].id}: certificate valid for {name}"
    facts = ctx._facts
    assert facts is not None and ctx.resolver_answers_others(ms[0], "203.0.113.10:53", "x") > 0
    assert ctx._facts is facts


def test_same_vantage_index_equals_the_scan(corpus: list[dict[str, Any]]) -> None:
    ms = [Measurement(r) for r in corpus[::5]]
    ms += [Measurement(dict(r, vantage={"cc": "ZZ", "asn": f"AS{i % 3}"}, run_id=f"r{i % 2}"))
           for i, r in enumerate(corpus[:60])]
    ctx = Context(ms)
    for m in ms:
        want = [o for o in ms if o is not m and o.vantage_key == m.vantage_key]
        assert ctx.same_vantage(m) == want and all(a is b for a, b in zip(ctx.same_vantage(m), want, strict=True))
    outsider = Measurement(dict(corpus[0], measurement_id="outside"))
    assert ctx.same_vantage(outsider) == [o for o in ms if o.vantage_key == outsider.vantage_key]
    odd = ms[:20] + [Measurement(dict(corpus[1], vantage={"cc": ["ZZ"], "asn": "AS1"}))]  # unhashable
    ctx = Context(odd)
    for m in odd:
        assert ctx.same_vantage(m) == [o for o in odd if o is not m and o.vantage_key == m.vantage_key]


def test_quic_tls_index_equals_the_scan(corpus: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """quic's "TLS to the same host works from this vantage" evidence from the per-batch index equals
    the scan over same-vantage measurements, also for a quic measurement from outside the batch and a
    batch with an unhashable vantage."""
    from censorscope.analysis.verdicts import quic

    ms = [Measurement(r) for r in corpus[::3]]
    ms += [Measurement(dict(r, vantage={"cc": "ZZ", "asn": f"AS{i % 3}"}, run_id=f"r{i % 2}"))
           for i, r in enumerate(corpus[:80])]
    hosts = {m.host for m in ms if m.ops("tls_handshake")}
    assert len(hosts) > 3
    outsider = Measurement(dict(corpus[0], measurement_id="outside"))
    odd = ms[:20] + [Measurement(dict(corpus[1], vantage={"cc": ["ZZ"], "asn": "AS1"}))]  # unhashable
    for batch in (ms, odd):
        ctx = Context(batch)
        got = [quic._tls_works(m, ctx) for m in [*batch, outsider]]
        with monkeypatch.context() as mp:
            mp.setattr(quic, "_successful_tls", lambda ctx: None)
            want = [quic._tls_works(m, Context(batch)) for m in [*batch, outsider]]
        assert got == want
        assert sum(g is not None for g in got) > 0 if batch is ms else True


def test_same_vantage_probe_equals_the_filtered_scan(corpus: list[dict[str, Any]]) -> None:
    ms = [Measurement(r) for r in corpus[::4]]
    ms += [Measurement(dict(r, vantage={"cc": "ZZ", "asn": f"AS{i % 3}"}, run_id=f"r{i % 2}",
                            probe="throughput" if i % 4 == 0 else r.get("probe")))
           for i, r in enumerate(corpus[:80])]
    outsider = Measurement(dict(corpus[0], measurement_id="outside"))
    odd = ms[:20] + [Measurement(dict(corpus[1], vantage={"cc": ["ZZ"], "asn": "AS1"}))]  # unhashable
    for batch in (ms, odd):
        ctx = Context(batch)
        for probe in {m.probe for m in batch} | {"throughput"}:
            for m in [*batch, outsider]:
                want = [o for o in batch if o is not m and o.vantage_key == m.vantage_key and o.probe == probe]
                got = ctx.same_vantage_probe(m, probe)
                assert len(got) == len(want) and all(a is b for a, b in zip(got, want, strict=True))
    assert any(Context(ms).same_vantage_probe(m, "throughput") for m in ms)


def _reference_time(stamp: Any) -> float | None:
    if not stamp or not isinstance(stamp, str):
        return None
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _usual_form(d: dt.datetime) -> str:
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f".{d.microsecond:06d}Z")


@settings(max_examples=400, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
def test_parse_time_usual_form_equals_datetime(d: dt.datetime) -> None:
    stamp = _usual_form(d)
    assert parse_time(stamp) == _reference_time(stamp)
    assert parse_time(stamp) is not None


def test_parse_time_near_the_usual_form_equals_datetime() -> None:
    rng = random.Random(3)
    base = ["2026-10-01T12:34:56.789012Z", "2024-02-29T23:59:59.999999Z", "1969-12-31T23:59:59.000001Z",
            "0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z"]
    odd = ["2023-02-29T00:00:00.000000Z", "2026-13-01T00:00:00.000000Z", "2026-10-01T24:00:00.000000Z",
           "2026-10-01T12:60:00.000000Z", "2026-10-01T12:00:60.000000Z", "2026-10-01T1\u0663:00:00.000000Z",
           "2026-10-01 12:00:00.000000Z", "2026-10-01T12:00:00,000000Z", "2026-W40-1T12:00:00.000000Z",
           "20261001T12:00:00.0000000Z", "2026-10-01T12:00:00.000000+", "2026-10-01T12:00:00Z",
           "2026-10-01T12:00:00.000000+02:00", "+026-10-01T12:00:00.000000Z", "", None, 5, ["x"]]
    alphabet = "0123456789-:TZ.+ W,\u0663x"
    cases = base + odd
    for _ in range(20_000):
        s = list(rng.choice(base))
        for _k in range(rng.randrange(1, 3)):
            s[rng.randrange(len(s))] = rng.choice(alphabet)
        cases.append("".join(s))
    for stamp in cases:
        assert parse_time(stamp) == _reference_time(stamp), stamp
