"""The control helper in the lab's control namespace, a campaign from the client namespace.

End to end: ``censorscope helper serve`` (uncensored side, lab ranges allowed),
``censorscope run --control`` with a ``[confirm]`` table in the censored client
namespace, then the verdict engine over the stored run. Ground truth comes from
the ``sni-throttling`` scenario: the slowed SNI is throttled, the other is not.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from censorscope.analysis.verdicts.engine import verdict_rows
from censorscope.lab import addressing as A
from censorscope.measure.store import iter_measurements

pytestmark = pytest.mark.lab

EXE = str(Path(sys.executable).with_name("censorscope"))
LAB_NETS = ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")


@pytest.fixture
def helper_in_control(use_scenario):
    procs = []

    def start(scenario: str):
        lab = use_scenario(scenario)
        argv = [EXE, "helper", "serve", "--listen", f"{A.CONTROL_V4}:0", "--resolver", A.PUBLIC_RESOLVER_V4]
        for net in LAB_NETS:
            argv += ["--allow", net]
        p = subprocess.Popen(lab.exec_argv("control", argv), stderr=subprocess.PIPE, text=True, env=lab.env())
        procs.append(p)
        m = re.search(r"listening on (http://\S+)", p.stderr.readline())
        if not m:
            pytest.fail(f"helper did not start in the control namespace: {p.stderr.read()[:500]}")
        return lab, m.group(1)

    yield start
    for p in procs:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_throttling_confirmed_with_control_and_same_path_reference(helper_in_control, tmp_path):
    lab, url = helper_in_control("sni-throttling")
    slowed, unslowed = "https://slowed.example.com/big.bin", "https://unslowed.example.com/big.bin"
    campaign = tmp_path / "throttle.toml"
    campaign.write_text(f"""
name = "lab-throttle"
[targets]
urls = ["{slowed}", "{unslowed}"]
[run]
probes = ["throughput"]
resolvers = ["{A.RESOLVER_V4}"]
concurrency = 1
[control]
url = "{url}"
[confirm]
attempts = 1
spacing = 0.5
innocuous_sni = "unslowed.example.com"
[probe.throughput]
max_time = 5.0
interval_ms = 10
""", encoding="utf-8")
    out = tmp_path / "out"
    run = subprocess.run(lab.exec_argv("client", [EXE, "run", str(campaign), "--out", str(out)]),
                         capture_output=True, text=True, env=lab.env(), timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (path,) = out.glob("**/*.jsonl")
    ms = list(iter_measurements(path))
    first = {m["input"]: m for m in ms if m["attempt"] == 0}

    # the control crossed no censor: full speed for both names, from the helper
    for m in first.values():
        ctl = m["control"]
        assert ctl is not None and ctl["failure"] is None, ctl
        (tp,) = [o for o in ctl["observations"] if o["operation"] == "throughput"]
        assert tp["failure"] is None and tp["bytes"] == 1 << 20

    slow_tp = [o for o in first[slowed]["observations"] if o["operation"] == "throughput"][0]
    assert slow_tp["stopped"] == "max_time" and slow_tp["bytes"] < 1 << 20
    # the confirmer asked for the same-path reference: same address, innocuous SNI
    refs = [m for m in ms if m["attempt"] > 0 and m["annotations"]["confirms"] == first[slowed]["measurement_id"]]
    assert any(m["annotations"].get("retest_options", {}).get("sni") == "unslowed.example.com" for m in refs), \
        [m["annotations"] for m in refs]

    rows = {(r["input"], r["probe"]): r for r in verdict_rows(str(path))}
    assert rows[(slowed, "throughput")]["verdict"] == "blocked", json.dumps(rows[(slowed, "throughput")])
    assert rows[(slowed, "throughput")]["method"] == "throttled"
    assert rows[(unslowed, "throughput")]["verdict"] == "ok", json.dumps(rows[(unslowed, "throughput")])


def test_helper_in_lab_refuses_what_the_allow_list_does_not_cover(helper_in_control):
    import httpx

    lab, url = helper_in_control("baseline")

    def ask(target):
        with httpx.Client(trust_env=False, timeout=30) as c:
            return c.post(url + "/v1/measure", json={"probe": "tcp", "target": target}).status_code

    # from the client namespace, through the censor: allowed lab server, refused private/loopback
    code = lab.topo.call_in("client", ask, f"{A.WEB_V4}:443")
    assert code == 200
    assert lab.topo.call_in("client", ask, "10.0.0.1:80") == 403
    assert lab.topo.call_in("client", ask, "127.0.0.1:22") == 403
