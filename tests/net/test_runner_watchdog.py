"""The campaign runner's watchdog: long multi-step probes run to the end, hanging ones are cut off
with their partial observations kept and judged inconclusive.

The real ``fet`` probe runs against a loopback echo server; the hanging probe
is a fake module (no traffic). Durations come from the probes' own sleeps
(intervals, follow-up delay), so the comparisons with the watchdog do not
depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import types
from pathlib import Path

import pytest
from vpn_support import serving_peer

from censorscope.analysis.verdicts.engine import verdict_for
from censorscope.measure import runner as runner_mod
from censorscope.measure.campaign import Campaign
from censorscope.measure.runs import execute
from censorscope.measure.store import iter_measurements
from censorscope.probes import fet
from censorscope.probes.observation import Recorder

pytestmark = pytest.mark.net

#: watchdog floor for these tests (the real one is 30 s)
FLOOR = 1.5
#: fet options whose own sleeps (3 intervals, the follow-up delay, one interval) last 4.2 s
FET_OPTIONS = {"attempts": 4, "interval": 0.3, "followups": 1, "followup_delay": 3.0, "read_timeout": 2.0,
               "timeout": 0.3}
SLEEPS = 3 * 0.3 + 3.0 + 0.3


def _echo(c: socket.socket) -> None:
    c.settimeout(10)
    c.sendall(c.recv(65536))


def _list(tmp_path: Path, entries: list[str]) -> str:
    p = tmp_path / "list.txt"
    p.write_text("".join(e + "\n" for e in entries), encoding="utf-8")
    return str(p)


def _fet_run(tmp_path: Path) -> dict:
    port, srv = serving_peer(_echo)
    try:
        c = Campaign(lists=[_list(tmp_path, [f"fet://127.0.0.1:{port}"])], probes=["fet"],
                     out=str(tmp_path / "o"), probe_options={"fet": dict(FET_OPTIONS)})
        summary = asyncio.run(execute(c))
    finally:
        srv.close()
    [m] = list(iter_measurements(summary.path))
    return m


def test_fet_longer_than_the_old_watchdog_runs_to_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "WATCHDOG_MIN", FLOOR)
    old_rule = max(FLOOR, runner_mod.WATCHDOG_FACTOR * FET_OPTIONS["timeout"])
    assert SLEEPS > old_rule  # the premise: without its worst case, fet would be cut off
    m = _fet_run(tmp_path)
    ann = m["annotations"]
    assert "runner_failure" not in ann and "incomplete" not in ann, ann
    attempts = [o for o in m["observations"] if o["operation"] == "fet_attempt"]
    assert [o["kind"] for o in attempts] == ["fet", "control"] * 4 + ["followup"]
    assert all(o["failure"] is None for o in attempts)
    assert m["runtime"] >= SLEEPS > old_rule
    assert verdict_for(m).verdict == "ok"


def test_without_its_worst_case_fet_is_cut_off_and_keeps_what_it_saw(tmp_path, monkeypatch):
    """The same run with the declaration removed: the old rule cuts it off during the follow-up
    delay; the attempts already made are kept and the measurement is marked incomplete."""
    monkeypatch.setattr(runner_mod, "WATCHDOG_MIN", FLOOR)
    monkeypatch.delattr(fet, "worst_case")
    m = _fet_run(tmp_path)
    ann = m["annotations"]
    assert ann["runner_failure"] == "generic_timeout_error" and ann["incomplete"] is True
    assert "worst case" not in ann["runner_detail"]
    ops = [o["operation"] for o in m["observations"]]
    assert ops[0] == "fet_plan" and "fet_attempt" in ops and "connect" in ops
    assert not any(o.get("kind") == "followup" for o in m["observations"])
    assert m["runtime"] < SLEEPS
    assert verdict_for(m).verdict == "inconclusive"


class _Control:
    """A control that connected to the address the fake probe saw reset."""

    async def control_for(self, probe: str, target: str, options: object) -> dict:
        return {"observations": [{"id": 1, "operation": "connect", "parent_id": None, "t0": 0.0, "t": 0.01,
                                  "failure": None, "address": "203.0.113.120:443", "ip": "203.0.113.120",
                                  "port": 443, "proto": "tcp"}], "failure": None}


def _hanging_tcp_probe() -> types.ModuleType:
    """A ``tcp`` probe double: records a reset connect and a second connect, starts a third, hangs."""
    mod = types.ModuleType("hanging_tcp")

    @dataclasses.dataclass
    class Options:
        timeout: float = 0.1

    async def measure(target: str, net: object, options: Options) -> list:
        rec = Recorder()
        for failure in ("connection_reset", "connection_reset"):
            rec.begin("connect", address=target, ip="203.0.113.120", port=443, proto="tcp").fail(failure)
        rec.begin("connect", address=target, ip="203.0.113.120", port=443, proto="tcp")
        await asyncio.sleep(3600)  # a bug: the probe never returns
        return rec.observations

    mod.NAME, mod.VERSION, mod.SUMMARY, mod.TARGET_HELP = "tcp", "9", "hangs", "IP:PORT"
    mod.Options = Options
    mod.measure = measure
    mod.target_from_url = lambda url: "203.0.113.120:443"
    mod.worst_case = lambda target, options: 0.2  # declared, and wrong: the watchdog still fires
    return mod


def test_a_hanging_probe_is_cut_off_keeping_its_observations_and_judged_inconclusive(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "WATCHDOG_MIN", 0.5)
    c = Campaign(lists=[_list(tmp_path, ["http://203.0.113.120/"])], probes=["tcp"], out=str(tmp_path / "o"))
    summary = asyncio.run(execute(c, probes={"tcp": _hanging_tcp_probe()}, control=_Control()))
    [m] = list(iter_measurements(summary.path))
    ann = m["annotations"]
    assert ann["runner_failure"] == "generic_timeout_error" and ann["incomplete"] is True
    assert "watchdog" in ann["runner_detail"] and ann["runner_detail"] == (
        "probe still running after the 0.5 s watchdog (its declared worst case: 0.2 s)")
    assert [(o["operation"], o["failure"]) for o in m["observations"]] == [
        ("connect", "connection_reset"), ("connect", "connection_reset")]
    assert [u["operation"] for u in ann["unfinished_operations"]] == ["connect"]
    assert ann["unfinished_operations"][0]["address"] == "203.0.113.120:443"
    assert summary.per_failure == {"generic_timeout_error": 1}
    v = verdict_for(m)
    assert v.verdict == "inconclusive" and "did not finish" in v.evidence and "2 partial observation(s)" in v.evidence
    # what makes it inconclusive is the runner's mark: the same observations, not cut off, are blocking
    whole = dict(m, annotations={k: v for k, v in ann.items()
                                 if k not in ("runner_failure", "runner_detail", "incomplete",
                                              "unfinished_operations")})
    assert verdict_for(whole).verdict == "blocked"


def test_a_crashing_probe_keeps_what_it_saw_and_is_inconclusive(tmp_path):
    mod = _hanging_tcp_probe()

    async def crash(target: str, net: object, options: object) -> list:
        rec = Recorder()
        rec.begin("connect", address=target, ip="203.0.113.120", port=443, proto="tcp").fail("connection_reset")
        raise KeyError("a bug")

    mod.measure = crash
    c = Campaign(lists=[_list(tmp_path, ["http://203.0.113.120/"])], probes=["tcp"], out=str(tmp_path / "o"))
    summary = asyncio.run(execute(c, probes={"tcp": mod}, control=_Control()))
    [m] = list(iter_measurements(summary.path))
    ann = m["annotations"]
    assert ann["probe_error"] == "bug: KeyError: 'a bug'" and ann["incomplete"] is True
    assert ann["unfinished_operations"] == []
    assert [(o["operation"], o["failure"]) for o in m["observations"]] == [("connect", "connection_reset")]
    v = verdict_for(m)
    assert v.verdict == "inconclusive" and "bug: KeyError" in v.evidence
