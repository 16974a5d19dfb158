"""``censorscope lab``: help, scenarios listing, non-root error, and the full up/status/exec/down cycle."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from censorscope.lab import addressing as A
from censorscope.lab import netns, topology
from censorscope.lab import scenario as S
from censorscope.measure.cli import cli

COMMANDS = ("up", "status", "down", "exec", "scenarios", "demo")


def _cs(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "censorscope", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    r = CliRunner().invoke(cli, ["lab", command, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output


def test_scenarios_json_lists_every_shipped_scenario_with_truth():
    r = CliRunner().invoke(cli, ["lab", "scenarios", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [d["name"] for d in data] == S.shipped()
    by_name = {d["name"]: d for d in data}
    dns = by_name["dns-injection"]
    assert dns["behaviours"] == ["dns_injection"] and not dns["negative_control"]
    assert {"target": "blocked.example.com", "probe": "dns", "verdict": "blocked", "method": "dns.injection",
            "note": ""} in dns["truth"]
    assert by_name["server-down"]["negative_control"]
    assert all(d["description"] and d["truth"] for d in data)
    human = CliRunner().invoke(cli, ["lab", "scenarios"])
    assert human.exit_code == 0 and "blocked:dns.injection" in human.output


@pytest.mark.parametrize("args", [
    ["lab", "up"], ["lab", "status"], ["lab", "down"], ["lab", "exec", "--", "true"], ["lab", "demo"],
])
def test_not_root_is_one_line_and_exit_2(monkeypatch, args):
    monkeypatch.setattr(topology, "geteuid", lambda: 1000)
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs root" in lines[0], r.output
    assert "Traceback" not in r.output


def test_scenario_and_scenario_file_are_exclusive(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('name = "x"\ndescription = "d"\n')
    r = CliRunner().invoke(cli, ["lab", "up", "--scenario", "baseline", "--scenario-file", str(f)])
    assert r.exit_code == 2 and "not both" in r.output


def test_bad_scenario_file_is_a_usage_error(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('name = "x"\ndescription = "d"\nwhatever = 1\n')
    r = CliRunner().invoke(cli, ["lab", "up", "--scenario-file", str(f)])
    assert r.exit_code == 2 and "unknown key(s) whatever" in r.output


@pytest.mark.lab
def test_up_status_exec_down_with_an_external_scenario(tmp_path, fresh_lab_name):
    f = tmp_path / "mine.toml"
    f.write_text(
        'name = "mine"\ndescription = "external"\n'
        '[[site]]\nname = "mine.example.com"\naddress = ["203.0.113.140", "2001:db8:3::1:140"]\n'
        '[resolver]\nlie = { "mine.example.com" = "nxdomain" }\n'
        '[[truth]]\ntarget = "mine.example.com"\nprobe = "dns"\nverdict = "blocked"\nmethod = "dns.nxdomain"\n'
    )
    name = fresh_lab_name
    r = _cs("lab", "up", "--name", name, "--scenario-file", str(f))
    assert r.returncode == 0, r.stderr
    assert "up in" in r.stdout and "'mine'" in r.stdout
    try:
        st = _cs("lab", "status", "--name", name, "--json")
        assert st.returncode == 0, st.stderr
        (info,) = json.loads(st.stdout)
        assert info["scenario"] == "mine" and all(info["namespaces"].values())
        assert {"nsd", "unbound-isp", "unbound-public", "nginx", "misbehave"} <= set(info["processes"])
        assert all(p["alive"] for p in info["processes"].values())
        # the lab's resolv.conf inside, the lab CA in the environment
        assert f"nameserver {A.RESOLVER_V4}" in _cs("lab", "exec", "--name", name, "--", "cat", "/etc/resolv.conf").stdout
        env = _cs("lab", "exec", "--name", name, "--", "sh", "-c", "echo $CENSORSCOPE_EXTRA_CA $SSL_CERT_FILE")
        ca = str(topology.state_dir(name) / "pki" / "ca.pem")
        assert info["ca_file"] == ca
        assert env.stdout.split() == [ca, ca]
        # the lie is the client's; the control's resolver tells the truth
        assert "NXDOMAIN" in _cs("lab", "exec", "--name", name, "--", "dig", "+tries=1", "mine.example.com").stdout
        ctl = _cs("lab", "exec", "--name", name, "--ns", "control", "--", "dig", "+short", "mine.example.com")
        assert ctl.stdout.split() == ["203.0.113.140"]
        https = _cs("lab", "exec", "--name", name, "--", "curl", "-sS", "-m", "5", "--resolve",
                    "mine.example.com:443:203.0.113.140", "https://mine.example.com/")
        assert "<title>mine.example.com</title>" in https.stdout, https.stderr
        # exit codes pass through
        assert _cs("lab", "exec", "--name", name, "--", "sh", "-c", "exit 7").returncode == 7
    finally:
        down = _cs("lab", "down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert not any(netns.exists(topology.sys_ns(name, r)) for r in A.NAMESPACES)
    assert _cs("lab", "status", "--name", name).returncode == 1
    gone = _cs("lab", "exec", "--name", name, "--", "true")
    assert gone.returncode == 1 and "is not up" in gone.stderr


@pytest.mark.lab
@pytest.mark.slow
def test_demo_runs_the_default_campaign_and_tears_down():
    name = f"d{__import__('os').getpid() % 100000}"
    r = subprocess.run([sys.executable, "-m", "censorscope", "lab", "demo", "--name", name],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "censorscope run --list default --out results" in r.stdout
    assert "103 measured" in r.stdout or "measured this time" in r.stdout
    assert "outcomes:" in r.stdout and "connection_reset" in r.stdout and "generic_timeout_error" in r.stdout
    assert "ground truth for these targets" in r.stdout and "blocked:dns.injection=" in r.stdout
    assert name not in topology.list_labs()
