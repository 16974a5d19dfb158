"""Benchmark: load + verdicts + daily aggregation of N measurements vs DuckDB's raw read_json.

Usage: python bench/analysis_1m.py [--n 1000000] [--workers 2] [--keep FILE] [--repeat 1]

Generates N synthetic web measurements (a mix of ok, DNS-injected, reset,
blackholed and down targets over 30 days, with controls) into one JSONL
file, then times, in the same run:

- reference: DuckDB ``read_json`` of the whole file into a table (raw parsing
  only, no judgement);
- censorscope: ``load``-equivalent parsing + ``verdicts`` + ``blocking_matrix``
  by day, with ``--workers`` processes over byte ranges of the file (~64 MB each, at
  least 4 per worker; each range is one batch, so cross-measurement facts such as
  residual censorship stop at range edges).

Prints both times, their ratio (censorscope / DuckDB; the goal is <= 2), the
CPU seconds each side used (user + system, all threads and worker processes:
less sensitive than wall time to other load on a shared machine) and the peak
RSS of each side (measured in separate child processes). ``--repeat K`` runs
the pair K times, alternating, and prints every ratio and the median; the load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

SITES = 400
#: the size of the byte ranges judged one at a time by a worker (each judged as one batch)
RANGE_BYTES = 64 << 20


def _measurement(i: int, rng: random.Random) -> dict:
    # tests/unit/test_verdicts_golden.py judges records of this generator: changing what it
    # produces means regenerating that golden table (see the test's docstring)
    site = rng.randrange(SITES)
    kind = ("ok", "ok", "ok", "inject", "reset", "blackhole", "down")[site % 7]
    host = f"site{site}.example"
    addr = f"203.0.113.{100 + site % 100}"
    day = i % 30
    real = {"t": 0.02, "source": "203.0.113.10:53", "rcode": "NOERROR", "flags": ["QR", "RD", "RA"],
            "answers": [{"name": host + ".", "type": "A", "ttl": 300, "data": addr}], "addresses": [addr]}
    responses = [real]
    if kind == "inject":
        forged = "198.51.100.20" + str(site % 10)
        responses = [{"t": 0.01, "source": "203.0.113.10:53", "rcode": "NOERROR", "flags": ["QR", "AA"],
                      "answers": [{"name": host + ".", "type": "A", "ttl": 60, "data": forged}],
                      "addresses": [forged]}, real]
    obs = [{"id": 1, "operation": "dns_query", "parent_id": None, "t0": 0.0, "t": 0.02, "failure": None,
            "query_name": host, "query_type": "A", "transport": "udp", "resolver": "203.0.113.10:53",
            "addresses": responses[0]["addresses"], "responses": responses}]
    fail = {"reset": "connection_reset", "blackhole": "generic_timeout_error",
            "down": "connection_refused"}.get(kind)
    obs.append({"id": 2, "operation": "connect", "parent_id": 1, "t0": 0.02, "t": 0.05,
                "failure": "generic_timeout_error" if kind == "blackhole" else ("connection_refused"
                                                                             if kind == "down" else None),
                "address": f"{addr}:443", "ip": addr, "port": 443, "proto": "tcp"})
    if kind not in ("blackhole", "down"):
        obs.append({"id": 3, "operation": "tls_handshake", "parent_id": 2, "t0": 0.05, "t": 0.08,
                    "failure": fail if kind == "reset" else None, "address": f"{addr}:443", "server_name": host,
                    "tls_version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256",
                    "verification": {"ok": True, "failure": None, "hostname_ok": True, "detail": None}})
    ctrl = []
    for o in obs:
        c = dict(o, failure=("connection_refused" if (kind == "down" and o["operation"] == "connect") else None))
        if o["operation"] == "dns_query":
            c["responses"] = [real]
            c["addresses"] = [addr]
        ctrl.append(c)
    if kind in ("blackhole", "down"):
        ctrl.append({"id": 3, "operation": "tls_handshake", "parent_id": 2, "t0": 0.05, "t": 0.08,
                     "failure": None if kind == "blackhole" else None, "address": f"{addr}:443",
                     "server_name": host})
        if kind == "down":
            ctrl.pop()
    return {
        "measurement_id": f"m{i:08d}", "campaign": "bench", "run_id": f"20261101T0000{day:02d}Z-abcdef",
        "probe": "web", "probe_version": "0.1.0", "input": f"https://{host}/", "repetition": 0, "attempt": 0,
        "measurement_start_time": f"2026-10-{1 + day:02d}T{i % 24:02d}:{i % 60:02d}:00.000000Z",
        "runtime": 0.1, "vantage": {"cc": "ZZ", "asn": f"AS6449{i % 4}", "network": "bench",
                                    "resolver": "203.0.113.10:53"},
        "software": {"name": "censorscope", "version": "0.1.0"}, "observations": obs,
        "control": {"observations": ctrl}, "annotations": {},
    }


def generate(path: Path, n: int) -> None:
    rng = random.Random(1)
    with open(path, "wb") as f:
        for i in range(n):
            f.write(orjson.dumps(_measurement(i, rng)) + b"\n")


def _ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(size * k // parts)
            f.readline()
            cuts.append(f.tell())
    cuts.append(size)
    return list(zip(cuts, cuts[1:], strict=False))


def _judge_range(args: tuple[str, int, int]) -> object:
    from censorscope.analysis.aggregate import verdict_counts
    from censorscope.analysis.verdicts import verdicts

    path, start, end = args
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)  # the range starts and ends on line boundaries (see _ranges)
    loads = orjson.loads
    # Parsing allocates ~40 containers per record and judging a few more, all kept until the range
    # is done: with the cyclic GC on, its passes re-scan every one of them (measured: parsing ~5x
    # slower; judging 7 % more CPU, mostly one pass over everything the batch made when the engine's
    # own pause ends). Nothing made here needs the cyclic collector: everything is freed by reference
    # counting once the range is done, before the collector is switched back on.
    enabled = gc.isenabled()
    gc.disable()
    try:
        records = [loads(line) for line in data.splitlines() if line.strip()]
        del data
        v = verdicts(records)  # its table has measurement_start_time (EXTRA_COLUMNS) for the daily counts
        counts, n = verdict_counts(v, freq="D"), len(v)
        del records, v
    finally:
        if enabled:
            gc.enable()
    return counts, n


def run_censorscope(path: Path, workers: int) -> tuple[float, int]:
    import multiprocessing as mp

    import pandas as pd

    from censorscope.analysis.aggregate import matrix_from_counts

    t0 = time.perf_counter()
    # byte ranges of ~64 MB (~30,000 measurements; at least 4 per worker): a worker holds one range's
    # records at a time (peak memory) and the last ranges finish close together (both cores busy)
    n_ranges = max(max(1, workers) * 4, -(-path.stat().st_size // RANGE_BYTES))
    args = [(str(path), a, b) for a, b in _ranges(path, n_ranges)]
    with mp.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_judge_range, args)
    counts = pd.concat([p[0] for p in parts]).groupby(
        ["input", "vantage_cc", "vantage_asn", "period", "verdict", "method"], dropna=False)["count"].sum()
    matrix = matrix_from_counts(counts.reset_index())
    elapsed = time.perf_counter() - t0
    assert sum(p[1] for p in parts) > 0 and len(matrix) > 0
    return elapsed, len(matrix)


def run_duckdb(path: Path) -> float:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE m AS SELECT * FROM read_json('{path}', format='newline_delimited')")
    con.execute("SELECT count(*) FROM m").fetchall()
    return time.perf_counter() - t0


def _child(which: str, path: Path, workers: int) -> dict:
    code = (f"import sys, json, resource; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import analysis_1m as b; from pathlib import Path; "
            f"r = b.run_duckdb(Path({str(path)!r})) if {which!r} == 'duckdb' else "
            f"b.run_censorscope(Path({str(path)!r}), {workers})[0]; "
            "me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN); "
            "rss = max(me.ru_maxrss, kids.ru_maxrss); "
            "cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime; "
            "print(json.dumps({'seconds': r, 'peak_rss_mb': rss / 1024, 'cpu_seconds': cpu}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", type=Path, help="Reuse/keep the generated file here.")
    ap.add_argument("--repeat", type=int, default=1, help="Run the DuckDB/censorscope pair this many times.")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    path = args.keep or Path(tmp.name) / "bench.jsonl"
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.n)
        print(f"generated {args.n} measurements ({path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")
    from censorscope.analysis.verdicts import ENGINE
    print(f"verdict engine: {ENGINE} (docs/analysis.md, 'Speed: the compiled engine'); python {sys.version.split()[0]}")
    print(f"load average before: {_load()}")
    ratios = []
    for k in range(args.repeat):
        duck = _child("duckdb", path, args.workers)
        ours = _child("censorscope", path, args.workers)
        ratios.append(ours["seconds"] / duck["seconds"])
        tag = f"run {k + 1}/{args.repeat}: " if args.repeat > 1 else ""
        print(f"{tag}duckdb read_json:                 {duck['seconds']:.1f} s ({duck['cpu_seconds']:.1f} s CPU), "
              f"peak RSS {duck['peak_rss_mb']:.0f} MB")
        print(f"{tag}censorscope load+verdicts+daily:  {ours['seconds']:.1f} s ({ours['cpu_seconds']:.1f} s CPU), "
              f"peak RSS per process {ours['peak_rss_mb']:.0f} MB ({args.workers} workers)")
        print(f"{tag}ratio censorscope/duckdb = {ratios[-1]:.2f}  (goal <= 2.0); CPU ratio "
              f"{ours['cpu_seconds'] / duck['cpu_seconds']:.2f}")
    if args.repeat > 1:
        print(f"ratios {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")
    print(f"load average after: {_load()}")


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"

if __name__ == "__main__":
    main()
