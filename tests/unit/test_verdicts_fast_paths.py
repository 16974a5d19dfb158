"""The verdict engine's fast paths give the same answers as the straightforward code they replace."""

from __future__ import annotations

import gc
import random

from censorscope.analysis.verdicts import verdicts
from censorscope.analysis.verdicts.core import Measurement, host_of
from censorscope.analysis.verdicts.engine import _fewer_gc_passes, judge_batch


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


def test_gc_thresholds_restored_even_on_error() -> None:
    before = gc.get_threshold()
    try:
        with _fewer_gc_passes():
            assert gc.get_threshold()[0] >= 50_000
            with _fewer_gc_passes():  # nested batches share one save/restore
                pass
            assert gc.get_threshold()[0] >= 50_000
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    judge_batch([{"measurement_id": "a", "probe": "nope"}])
    assert gc.get_threshold() == before


def test_empty_and_mixed_tables_keep_their_types() -> None:
    empty = verdicts([])
    assert len(empty) == 0 and str(empty["confidence"].dtype) == "object"
    df = verdicts([{"measurement_id": "a", "probe": "nope", "vantage": {"asn": 64496}}])
    assert df["vantage_asn"].tolist() == [64496] and df["vantage_cc"].tolist() == [None]
    assert df["method"].tolist() == [None] and df["confidence"].dtype == float
