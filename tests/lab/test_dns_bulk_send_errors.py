"""A datagram the kernel refuses to send is the query's result, the same in every bulk DNS engine.

Loopback cannot refuse a send by itself, so a network namespace of our own (loopback only) gets an
nftables rule dropping outgoing UDP to one port: ``sendmmsg``/``sendto`` then fail with EPERM. The
in-process Python engine, the worker's C engine and the worker's Python engine must all record
``permission_denied`` at the ``send`` step, count it in ``send_errors`` and wait for nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import test_dns_bulk as t
out = {}
for worker in t.WORKERS:
    stats, results = t.bulk(["a.example", "b.example"], "127.0.0.1:5353", qtypes=("A", "AAAA"), hold_window=0.05,
                            timeout=0.5, worker=worker)
    out[str(worker)] = {"counts": [stats.queries, stats.send_errors, stats.timeouts, stats.responses],
                        "records": t._comparable(results)}
print(json.dumps(out))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def test_send_errors_are_recorded_alike_by_every_engine():
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces)", pytrace=False)
    ns = f"csdnsb{os.getpid()}{uuid.uuid4().hex[:4]}"
    _ip("netns", "add", ns)
    try:
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        for rule in (["add", "table", "inet", "t"],
                     ["add", "chain", "inet", "t", "out", "{ type filter hook output priority 0; }"],
                     ["add", "rule", "inet", "t", "out", "udp", "dport", "5353", "drop"]):
            _ip("netns", "exec", ns, "nft", *rule)
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT, str(ROOT / "tests" / "net")],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        runs = json.loads(done.stdout.splitlines()[-1])
    finally:
        _ip("netns", "del", ns)
    assert set(runs) == {"False", "True", "py"}
    for run in runs.values():
        assert run["counts"] == [4, 4, 0, 0]
        for rows in run["records"].values():
            assert [(r["failure"], r["failed_step"], r["responses"]) for r in rows] == [
                ("permission_denied", "send", [])] * 2
    assert runs["True"] == runs["False"] == runs["py"]
