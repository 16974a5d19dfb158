"""The control helper in the lab's control namespace, a campaign from the client namespace.

End to end: ``censorscope helper serve`` (uncensored side, lab ranges allowed),
``censorscope run --control`` with a ``[confirm]`` table in the censored client
namespace, then the verdict engine over the stored run. Ground truth comes from
the ``sni-throttling`` scenario: the slowed SNI is throttled, the other is not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from subprocs import stop_process

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
        stop_process(p)


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


RESIDUAL = """
name = "residual-short"
description = "SNI trigger resets the flow and punishes (client, server, 443) for 10 s"

[[site]]
name = "trigger.example.org"
address = ["203.0.113.161", "2001:db8:3::1:161"]

[[site]]
name = "bystander.example.org"
address = ["203.0.113.161", "2001:db8:3::1:161"]

[[censor]]
behaviour = "rst_injection"
sni = ["trigger.example.org"]

[[censor]]
behaviour = "residual"
duration = 10.0
mode = "reset"
probability = 1.0

[[truth]]
target = "https://trigger.example.org/"
probe = "web"
verdict = "blocked"
method = "tls.sni_reset"

[[truth]]
target = "https://bystander.example.org/"
probe = "web"
verdict = "ok"
"""


def _run(lab, tmp_path: Path, name: str, body: str, out: Path) -> None:
    campaign = tmp_path / f"{name}.toml"
    campaign.write_text(f'name = "{name}"\n' + body, encoding="utf-8")
    run = subprocess.run(lab.exec_argv("client", [EXE, "run", str(campaign), "--out", str(out)]),
                         capture_output=True, text=True, env=lab.env(), timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.slow
def test_sni_reset_and_residual_penalty_told_apart_by_confirmation(helper_in_control, tmp_path):
    scenario = tmp_path / "residual-short.toml"
    scenario.write_text(RESIDUAL, encoding="utf-8")
    lab, url = helper_in_control(scenario)
    trigger, bystander = "https://trigger.example.org/", "https://bystander.example.org/"
    common = f"""
[run]
probes = ["web"]
resolvers = ["{A.RESOLVER_V4}"]
[control]
url = "{url}"
[confirm]
attempts = 1
spacing = 12         # past the 10 s penalty box
innocuous_sni = "bystander.example.org"
"""
    out = tmp_path / "out"
    _run(lab, tmp_path, "trigger", f'[targets]\nurls = ["{trigger}"]\n' + common, out)
    # trigger again, then measure the bystander at once: inside the penalty box
    poke = subprocess.run(lab.exec_argv("client", [EXE, "probe", "tls", "203.0.113.161:443", "--sni",
                                                   "trigger.example.org", "--timeout", "3"]),
                          capture_output=True, text=True, env=lab.env(), timeout=60)
    assert "connection_reset" in poke.stdout, poke.stdout + poke.stderr
    _run(lab, tmp_path, "bystander", f'[targets]\nurls = ["{bystander}"]\n' + common, out)

    ms = [m for path in out.glob("**/*.jsonl") for m in iter_measurements(path)]
    by_input = {}
    for m in ms:
        by_input.setdefault(m["input"], []).append(m)
    # the trigger: a repeat, then the innocuous and the real SNI on the same address
    trig = sorted(by_input[trigger], key=lambda m: m["attempt"])
    assert [m["attempt"] for m in trig] == [0, 1]
    tls_retests = [m for m in ms if m["probe"] == "tls"]
    assert [m["annotations"]["retest_options"]["sni"] for m in tls_retests] == [
        "bystander.example.org", "trigger.example.org"]
    innocuous, real = ([o for o in m["observations"] if o["operation"] == "tls_handshake"][0] for m in tls_retests)
    assert innocuous["failure"] is None and real["failure"] == "connection_reset"
    # the bystander was caught by the penalty box first, and passed once it expired
    bys = sorted(by_input[bystander], key=lambda m: m["attempt"])
    first_failures = {o["failure"] for o in bys[0]["observations"] if o["failure"]}
    assert "connection_reset" in first_failures, bys[0]["observations"]
    assert not any(o["failure"] for o in bys[1]["observations"] if o["operation"] != "dns_query")
    # controls came from the uncensored side
    assert all(m["control"]["failure"] is None for m in ms)

    rows = {(r["input"], r["probe"]): r for r in verdict_rows(str(out))}
    assert (rows[(trigger, "web")]["verdict"], rows[(trigger, "web")]["method"]) == ("blocked", "tls.sni_reset"), \
        json.dumps(rows[(trigger, "web")])
    assert rows[(bystander, "web")]["verdict"] == "ok", json.dumps(rows[(bystander, "web")])


def test_dns_injection_confirmed_by_a_silent_address(helper_in_control, tmp_path):
    lab, url = helper_in_control("dns-injection")
    out = tmp_path / "out"
    _run(lab, tmp_path, "dns", f"""
[targets]
urls = ["https://blocked.example.com/", "https://www.example.com/"]
[run]
probes = ["dns"]
resolvers = ["{A.RESOLVER_V4}"]
[control]
url = "{url}"
[confirm]
attempts = 1
spacing = 0.2
no_dns_server = "{A.NO_DNS_V4}"
""", out)
    ms = [m for path in out.glob("**/*.jsonl") for m in iter_measurements(path)]
    blocked = [m for m in ms if m["input"] == "blocked.example.com"]
    silent = [m for m in blocked if m["annotations"].get("retest_options", {}).get("resolver") == A.NO_DNS_V4]
    assert len(silent) == 1, [m["annotations"] for m in blocked]
    (q,) = silent[0]["observations"]
    assert q["responses"] and all(a in A.FORGED_POOL_V4 for r in q["responses"] for a in r["addresses"])
    # the control asked the helper's (public) resolver and got the real answer, once
    (cq,) = blocked[0]["control"]["observations"]
    assert cq["resolver"].startswith(A.PUBLIC_RESOLVER_V4) and len(cq["responses"]) == 1
    assert not [m for m in ms if m["input"] == "www.example.com" and m["attempt"] > 0]  # nothing to confirm
    rows = {(r["input"], r["probe"]): r for r in verdict_rows(str(out))}
    assert (rows[("blocked.example.com", "dns")]["verdict"], rows[("blocked.example.com", "dns")]["method"]) == \
        ("blocked", "dns.injection"), json.dumps(rows[("blocked.example.com", "dns")])
    assert rows[("www.example.com", "dns")]["verdict"] == "ok", json.dumps(rows[("www.example.com", "dns")])
