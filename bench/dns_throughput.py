"""Benchmark: censorscope's bulk DNS engine vs dnsperf against the same nsd on loopback.

    .venv/bin/python bench/dns_throughput.py [--names 200000] [--rounds 3] [--hold-window 0.05]

Starts nsd (Debian package) on a random 127.0.0.x address and high port,
serving a generated zone with ``--names`` distinct names (``rrl-ratelimit:
0``, everything in a temp dir that is removed afterwards), then alternates
rounds of dnsperf and of ``censorscope.measure.dns_bulk.resolve_many``, each
sending every name once (one A query per name). censorscope records every
response: each name's observation dicts are written as one JSONL line
(orjson, buffered) while the run is timed; afterwards (untimed) the file is
read back and checked: every name once, as many responses on disk as the
engine received. Prints the medians and the figure ``ratio censorscope/dnsperf``,
with the CPU time per query of this process and of the engine's worker
process (``resolve_many(worker=...)``, ``--worker``).

What runs: with two CPUs, the worker's network loop is C
(``measure/_dns_bulk_engine.c``) and this process decodes the usual replies
in C (``probes/wire/_dnsbulk_c.c``), then serialises with orjson; the line
"paths:" says which. ``CENSORSCOPE_NO_CEXT=1`` runs the pure-Python paths
for comparison.

Measured here (2 vCPUs, 3-round runs, load average ~2 from the benchmark's
own processes): with nothing else busy (dnsperf 70-80k qps) medians of the
per-round ratios 0.58-0.66 (rounds 0.47-0.74; censorscope 45-57k qps; CPU
per query ~12-15 µs in this process, ~11-14 µs in the worker, nsd ~8-9 µs);
the pure-Python paths gave 0.38 (rounds 0.36-0.40; 26-27 µs + 26-28 µs).
While another process keeps one CPU busy (dnsperf 55-65k qps), both
clients get about one CPU and the ratio follows the CPU per query instead:
medians 0.42-0.47 (censorscope ~27 µs + nsd ~9 µs against dnsperf ~9 µs +
nsd ~8 µs); the pure-Python paths then gave 0.28.

Reference on this kind of machine (PERF-NOTES.md): dnsperf ~97k qps; a tuned
asyncio engine 31-64k qps. Traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from censorscope.measure.dns_bulk import resolve_many
from censorscope.measure.dns_bulk_worker import engine_kind
from censorscope.probes.wire import dnsbulk, dnswire

ZONE = "bench.test"


def write_zone(directory: Path, count: int) -> list[str]:
    """The zone file with ``count`` names n0..n{count-1}; returns the names."""
    names = [f"n{i}.{ZONE}" for i in range(count)]
    lines = [
        f"$ORIGIN {ZONE}.", "$TTL 300",
        "@ IN SOA ns hostmaster 1 3600 600 86400 60", "@ IN NS ns", "ns IN A 127.0.0.1",
    ]
    lines += [f"n{i} IN A 198.51.100.{i % 250 + 1}" for i in range(count)]
    (directory / f"{ZONE}.zone").write_text("\n".join(lines) + "\n")
    return names


def write_nsd_conf(directory: Path, ip: str, port: int) -> Path:
    conf = directory / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: {ip}@{port}
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{directory}"
    zonelistfile: "{directory}/zone.list"
    xfrdfile: "{directory}/xfrd.state"
    xfrdir: "{directory}"
    pidfile: "{directory}/nsd.pid"
    database: ""
    logfile: "{directory}/nsd.log"
    server-count: 1
    rrl-ratelimit: 0
    verbosity: 1
remote-control:
    control-enable: no
zone:
    name: {ZONE}
    zonefile: "{directory}/{ZONE}.zone"
""")
    return conf


def wait_ready(ip: str, port: int, name: str, deadline: float, proc: subprocess.Popen) -> None:
    """Poll with real queries until nsd answers (the zone has loaded)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"nsd exited with {proc.returncode}")
            sock.sendto(dnswire.build_query(name, "A", 1), (ip, port))
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            if dnswire.parse(data).answers:
                return
            time.sleep(0.1)
        raise RuntimeError("nsd did not answer in time")
    finally:
        sock.close()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a running process and its descendants (Linux /proc;
    nsd serves from forked children)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo.extend(c for c, (ppid, _cpu) in stats.items() if ppid == p)
    return total


def run_dnsperf(ip: str, port: int, query_file: Path, outstanding: int) -> tuple[float, float]:
    """(queries per second, CPU seconds dnsperf used)."""
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["dnsperf", "-s", ip, "-p", str(port), "-d", str(query_file), "-n", "1", "-l", "120",
         "-q", str(outstanding), "-t", "5"],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not qps:
        raise RuntimeError("dnsperf printed no rate:\n" + out)
    if lost and int(lost.group(1)):
        print(f"  (dnsperf lost {lost.group(1)} queries)")
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime
    return float(qps.group(1)), cpu


def run_censorscope(
    ip: str, port: int, names: list[str], hold: float, concurrency: int, out_path: Path, worker: bool | None = None,
) -> tuple[float, dict[str, int]]:
    cpu0 = time.process_time()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, "wb", buffering=1 << 20) as out:
        write = out.write
        dumps = orjson.dumps
        newline = orjson.OPT_APPEND_NEWLINE  # the line and its newline in one buffer, one write call

        def on_result(name: str, observations: list[dict], start: float, runtime: float) -> None:
            write(dumps({"input": name, "start": start, "runtime": runtime, "observations": observations},
                        option=newline))

        stats = asyncio.run(resolve_many(
            names, f"{ip}:{port}", hold_window=hold, timeout=5.0, concurrency=concurrency, on_result=on_result,
            worker=worker))
    cpu = time.process_time() - cpu0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the engine's worker process, if any
    worker_cpu = children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime
    counts = check_output(out_path, names)
    counts["cpu_us"] = round(cpu / max(stats.queries, 1) * 1e6, 1)
    counts["worker_cpu_us"] = round(max(worker_cpu, 0.0) / max(stats.queries, 1) * 1e6, 1)
    counts["timeouts"] = stats.timeouts
    counts["unmatched"] = stats.unmatched
    counts["engine_responses"] = stats.responses
    return stats.qps, counts


def check_output(path: Path, names: list[str]) -> dict[str, int]:
    """Read the stored lines back (after the timed run): names, responses and answered queries on disk."""
    counts = {"names": 0, "responses": 0, "answered": 0, "missing": 0}
    seen = set()
    with open(path, "rb") as f:
        for line in f:
            m = orjson.loads(line)
            seen.add(m["input"])
            counts["names"] += 1
            for o in m["observations"]:
                counts["responses"] += len(o["responses"])
                counts["answered"] += o["failure"] is None
    counts["missing"] = len(set(names) - seen)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--names", type=int, default=200_000, help="distinct names in the zone (each queried once)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each client")
    ap.add_argument("--hold-window", type=float, default=0.05, help="censorscope's hold window (> 0)")
    ap.add_argument("--concurrency", type=int, default=1000, help="censorscope queries awaiting a first answer")
    ap.add_argument("--worker", choices=("auto", "yes", "no"), default="auto",
                    help="resolve_many's worker process (auto: with fork and two CPUs or more)")
    ap.add_argument("--dnsperf-outstanding", type=int, default=100, help="dnsperf -q")
    ap.add_argument("--nice", type=int, default=-10,
                    help="niceness for this process, nsd and dnsperf alike (root only; less noise from other load)")
    args = ap.parse_args()
    if args.hold_window <= 0:
        ap.error("--hold-window must stay > 0: every response is still recorded")
    if shutil.which("nsd") is None or shutil.which("dnsperf") is None:
        print("needs the Debian packages nsd and dnsperf", file=sys.stderr)
        return 2

    if args.nice and os.geteuid() == 0:
        os.nice(args.nice)  # inherited by nsd and dnsperf: all three get the same priority
    tmp = Path(tempfile.mkdtemp(prefix="censorscope-bench-dns-"))
    proc = None
    try:
        ip = f"127.0.0.{random.randint(2, 254)}"
        port = random.randint(20000, 60000)
        names = write_zone(tmp, args.names)
        query_file = tmp / "queries.txt"
        query_file.write_text("".join(f"{n} A\n" for n in names))
        conf = write_nsd_conf(tmp, ip, port)
        proc = subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_ready(ip, port, names[-1], time.monotonic() + 60, proc)
        print(f"nsd on {ip}:{port}, {len(names)} names; censorscope hold window {args.hold_window} s, "
              f"concurrency {args.concurrency}; dnsperf -q {args.dnsperf_outstanding}")
        # the engine's CPU per query depends on the interpreter's build: here ~10-20 % more under the
        # venv's pyenv build (shared libpython, no PGO) than under Debian's /usr/bin/python3
        print(f"python {platform.python_version()} at {sys.executable}")
        print(f"paths: worker loop {engine_kind()}, reply decoder {'C' if dnsbulk.HAVE_CEXT else 'Python'} "
              f"(CENSORSCOPE_NO_CEXT=1: Python)")
        ours, theirs, ratios = [], [], []
        per_query = 1e6 / len(names)
        for r in range(args.rounds):
            nsd0 = process_cpu(proc.pid)
            dnsperf_qps, dnsperf_cpu = run_dnsperf(ip, port, query_file, args.dnsperf_outstanding)
            nsd1 = process_cpu(proc.pid)
            theirs.append(dnsperf_qps)
            qps, counts = run_censorscope(ip, port, names, args.hold_window, args.concurrency, tmp / "out.jsonl",
                                          {"auto": None, "yes": True, "no": False}[args.worker])
            nsd2 = process_cpu(proc.pid)
            ours.append(qps)
            ratios.append(qps / dnsperf_qps)
            size = os.path.getsize(tmp / "out.jsonl")
            print(f"round {r + 1}: ratio {qps / theirs[-1]:.2f}, load average {os.getloadavg()[0]:.2f}; "
                  f"dnsperf {theirs[-1]:,.0f} qps, censorscope {qps:,.0f} qps "
                  f"({counts['names']} names, {counts['responses']} responses recorded, {counts['answered']} "
                  f"answered, {counts['timeouts']} timeouts, {counts['unmatched']} unmatched, {size >> 20} MiB JSONL, "
                  f"{counts['cpu_us']} + {counts['worker_cpu_us']} µs CPU per query in this process + the worker)")
            print(f"  CPU µs per query: censorscope {counts['cpu_us'] + counts['worker_cpu_us']:.1f} + nsd "
                  f"{(nsd2 - nsd1) * per_query:.1f}; dnsperf {dnsperf_cpu * per_query:.1f} + nsd "
                  f"{(nsd1 - nsd0) * per_query:.1f}")
            if counts["names"] != len(names) or counts["missing"] or counts["responses"] != counts["engine_responses"]:
                print("  ERROR: not every name or response is on disk", file=sys.stderr)
                return 1
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"median: censorscope {a:,.0f} qps, dnsperf {b:,.0f} qps")
        print(f"median of the per-round ratios (each pair ran back to back): {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
        print(f"ratio censorscope/dnsperf: {a / b:.2f}")
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
