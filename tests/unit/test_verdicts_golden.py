"""Golden test: the verdict engine's output for a fixed, generated batch must not change.

The batch is bench/analysis_1m.py's synthetic web measurements (seeded), plus
deterministic variants of them that reach other branches of the rules (no
control, a failed control, bogon and forged answers, other probe names,
re-tests, probe errors, certificates that do not verify). The expected verdict
table (CSV, gzip) in tests/fixtures/verdicts_golden.csv.gz was computed with
the engine before its performance work; any speed-up must reproduce it byte
for byte.

A deliberate rule change (with a RULES_VERSION bump) regenerates it:
``.venv/bin/python tests/unit/test_verdicts_golden.py --write``.
"""

from __future__ import annotations

import copy
import gzip
import importlib.util
import io
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "verdicts_golden.csv.gz"
N_BASE = 3000
N_VARIANTS = 1200


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("_bench_analysis_1m", ROOT / "bench" / "analysis_1m.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _variant(rec: dict[str, Any], k: int) -> dict[str, Any]:
    """A copy of ``rec`` changed in one of several ways (selected by ``k``)."""
    r = copy.deepcopy(rec)
    r["measurement_id"] = f"v{k:06d}-{rec['measurement_id']}"
    kind = k % 12
    obs = r["observations"]
    if kind == 0:
        r["control"] = None
    elif kind == 1:
        r["control"] = {"failure": "control_helper_unreachable", "observations": []}
    elif kind == 2:
        r["probe"] = "dns"
    elif kind == 3:  # a known block-page or an unroutable answer (data only: nothing connects anywhere)
        q = obs[0]
        bad = ("10.10.34.35", "127.0.0.2", "192.168.7.1", "fe80::1", "::ffff:172.16.0.9", "100.64.1.1",
               "8.8.8.300")[(k // 12) % 7]
        q["addresses"] = [bad]
        q["responses"] = [dict(q["responses"][-1], addresses=[bad],
                               answers=[{"name": q["query_name"] + ".", "type": "A", "ttl": 60, "data": bad}])]
    elif kind == 4:
        r["annotations"] = {"probe_error": "the probe crashed"}
    elif kind == 5:
        r["probe"] = "tcp"
    elif kind == 6:
        r["probe"] = "tls"
    elif kind == 7:  # a certificate that does not verify, while the control's did
        for o in obs:
            if o["operation"] == "tls_handshake" and not o.get("failure"):
                o["verification"] = {"ok": False, "failure": "ssl_unknown_authority", "hostname_ok": False,
                                     "detail": None}
                o["peer_certificates"] = [{"sha256": "ab" * 32}]
        for c in r["control"]["observations"]:
            if c["operation"] == "tls_handshake":
                c["peer_certificates"] = [{"sha256": "cd" * 32}]
    elif kind == 8:  # a re-test of the base measurement
        r["attempt"] = 1
        r["annotations"] = {"confirms": rec["measurement_id"]}
    elif kind == 9:  # DNS failures of several kinds against a working control
        q = obs[0]
        q["failure"] = ("dns_nxdomain_error", "dns_servfail_error", "generic_timeout_error")[(k // 12) % 3]
        q["addresses"] = []
        q["responses"] = []
    elif kind == 10:  # answers differ from the control, no certificate links them
        q = obs[0]
        q["addresses"] = ["198.51.100.77"]
        q["responses"] = [dict(q["responses"][-1], addresses=["198.51.100.77"], answers=[])]
        r["observations"] = [q]
    else:  # a system resolver lookup instead of a dns_query
        r["probe"] = "system"
        q = obs[0]
        r["observations"] = [{"id": 1, "operation": "resolve", "parent_id": None, "t0": 0.0, "t": 0.01,
                              "failure": None, "query_name": q["query_name"], "addresses": q["addresses"]}]
    return r


def golden_records() -> list[dict[str, Any]]:
    """The golden batch (deterministic)."""
    b = _bench()
    rng = random.Random(1)
    base = [b._measurement(i, rng) for i in range(N_BASE)]
    pick = random.Random(7)
    variants = [_variant(base[pick.randrange(N_BASE)], k) for k in range(N_VARIANTS)]
    return base + variants


def golden_csv() -> str:
    """The verdict table of the golden batch as CSV text."""
    from censorscope.analysis.verdicts import verdicts

    buf = io.StringIO()
    verdicts(golden_records()).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def test_verdicts_match_golden() -> None:
    expected = gzip.decompress(FIXTURE.read_bytes()).decode("utf-8")
    got = golden_csv()
    if got != expected:
        exp_lines, got_lines = expected.splitlines(), got.splitlines()
        diff = [(i, e, g) for i, (e, g) in enumerate(zip(exp_lines, got_lines, strict=False)) if e != g]
        raise AssertionError(f"{len(diff)} rows differ (lines {len(exp_lines)} expected, {len(got_lines)} got); "
                             f"first: {diff[:3]}")


def test_golden_batch_covers_every_verdict() -> None:
    """The golden batch reaches every verdict kind and several methods (so it can catch a change)."""
    import csv

    rows = list(csv.DictReader(io.StringIO(gzip.decompress(FIXTURE.read_bytes()).decode("utf-8"))))
    assert {r["verdict"] for r in rows} == {"ok", "down", "blocked", "inconclusive"}
    assert len({r["method"] for r in rows if r["method"]}) >= 4


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        FIXTURE.write_bytes(gzip.compress(golden_csv().encode("utf-8"), mtime=0))
        print(f"wrote {FIXTURE}")
