"""The runner's watchdog rule, probes' declared worst cases, and the recorders a cut-off keeps.

No sockets: the loopback runs are in tests/net/test_runner_watchdog.py and
tests/net/test_worst_case_bounds.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import types

import pytest

from censorscope.measure import runner as runner_mod
from censorscope.measure.runner import WATCHDOG_FACTOR, WATCHDOG_MIN, WORST_CASE_MARGIN, watchdog_for
from censorscope.probes import registry
from censorscope.probes.observation import Recorder, watch_recorders

#: probes whose steps add up beyond a few timeouts: each must declare its worst case
MULTI_STEP = ("fet", "web", "throughput", "dns", "openvpn", "tor", "ikev2", "quic", "sstp", "ssh", "socks")

#: a representative target of each probe that declares a worst case
TARGETS = {
    "fet": "fet://127.0.0.1:8388", "web": "https://site.example/", "throughput": "https://cdn.example/o",
    "dns": "site.example", "openvpn": "openvpn://127.0.0.1:1194", "tor": "tor://127.0.0.1:9001",
    "ikev2": "ikev2://127.0.0.1", "quic": "quic://127.0.0.1:443?sni=site.example",
    "sstp": "sstp://127.0.0.1:443?sni=vpn.example", "ssh": "ssh://127.0.0.1:22",
    "socks": "socks://127.0.0.1:1080?dest=203.0.113.5:80",
}


@dataclasses.dataclass
class _Opts:
    timeout: float = 10.0


def _module(worst_case=None) -> types.ModuleType:
    mod = types.ModuleType("fake_probe")
    mod.NAME = "fake"
    if worst_case is not None:
        mod.worst_case = worst_case
    return mod


def test_rule_without_a_declared_worst_case_is_unchanged():
    assert watchdog_for(_module(), "t", _Opts(timeout=1.0)) == (WATCHDOG_MIN, None)
    assert watchdog_for(_module(), "t", _Opts(timeout=60.0)) == (WATCHDOG_FACTOR * 60.0, None)


def test_a_declared_worst_case_extends_the_watchdog_never_shortens_it():
    long = _module(lambda target, options: 100.0)
    assert watchdog_for(long, "t", _Opts(timeout=10.0)) == (WORST_CASE_MARGIN * 100.0, 100.0)
    short = _module(lambda target, options: 1.0)
    assert watchdog_for(short, "t", _Opts(timeout=10.0)) == (max(WATCHDOG_MIN, WATCHDOG_FACTOR * 10.0), 1.0)


def test_a_failing_worst_case_falls_back_to_the_rule(caplog):
    def broken(target, options):
        raise KeyError("bug")

    assert watchdog_for(_module(broken), "t", _Opts(timeout=20.0)) == (WATCHDOG_FACTOR * 20.0, None)
    assert "worst_case of probe fake failed" in caplog.text


@pytest.mark.parametrize("name", MULTI_STEP)
def test_multi_step_probes_declare_a_finite_worst_case(name):
    module = registry.load(name)
    assert callable(getattr(module, "worst_case", None)), f"{name} must declare worst_case (see probes/registry.py)"
    worst = module.worst_case(TARGETS[name], module.Options())
    assert isinstance(worst, float) and math.isfinite(worst) and worst > 0
    # never below the probe's own timeout: at least one step waits for it
    assert worst >= module.Options().timeout


def test_defaults_that_the_old_rule_would_have_cut_off():
    """With their defaults, these probes' worst cases exceed max(30 s, 4 x timeout): the reason for
    the contract (each figure is checked against a real run in tests/net/test_worst_case_bounds.py)."""
    for name in ("fet", "web", "throughput", "quic", "sstp", "ssh", "socks"):
        module = registry.load(name)
        opts = module.Options()
        assert module.worst_case(TARGETS[name], opts) > max(WATCHDOG_MIN, WATCHDOG_FACTOR * opts.timeout), name


def test_fet_worst_case_counts_every_connection_and_the_follow_ups():
    fet = registry.load("fet")
    base = fet.Options(attempts=4, timeout=1.0, read_timeout=0.5, interval=0.1, followups=0, followup_delay=0.0)
    per = 1.0 + 0.5 + 2.0  # connect, read, close wait
    assert fet.worst_case("fet://127.0.0.1:1", base) == pytest.approx(8 * per + 3 * 0.1)
    more = dataclasses.replace(base, followups=2, followup_delay=3.0)
    assert fet.worst_case("fet://127.0.0.1:1", more) == pytest.approx(8 * per + 3 * 0.1 + 3.0 + 2 * (per + 0.1))
    computed = dataclasses.replace(base, attempts=0)  # attempts from probability and confidence
    assert fet.worst_case("fet://127.0.0.1:1", computed) > fet.worst_case("fet://127.0.0.1:1", base)


def test_fet_worst_case_reads_the_targets_config(tmp_path):
    fet = registry.load("fet")
    cfg = tmp_path / "fet.toml"
    cfg.write_text("attempts = 40\nread_timeout = 2.0\n", encoding="utf-8")
    plain = fet.worst_case("fet://127.0.0.1:1", fet.Options(attempts=2))
    configured = fet.worst_case(f"fet://127.0.0.1:1?config={cfg}", fet.Options(attempts=2))
    assert configured == fet.worst_case("fet://127.0.0.1:1", fet.Options(attempts=40, read_timeout=2.0))
    assert configured > 10 * plain
    broken = tmp_path / "bad.toml"
    broken.write_text("attempts = [", encoding="utf-8")
    assert fet.worst_case(f"fet://127.0.0.1:1?config={broken}", fet.Options(attempts=2)) == plain  # no raise


def test_worst_cases_follow_their_options():
    web, tor, openvpn, dns = (registry.load(n) for n in ("web", "tor", "openvpn", "dns"))
    assert web.worst_case("https://1.2.3.4/", web.Options()) < web.worst_case("https://a.example/", web.Options())
    assert tor.worst_case("tor://127.0.0.1:1", tor.Options(dirport=80)) > tor.worst_case("tor://127.0.0.1:1", tor.Options())
    obfs4 = tor.Options(bridge="obfs4 127.0.0.1:1 " + "A" * 40 + " cert=x iat-mode=0")
    assert tor.worst_case("tor://127.0.0.1:1", obfs4) > tor.worst_case("tor://127.0.0.1:1", tor.Options())
    assert dns.worst_case("a.example", dns.Options(transport="doh")) > dns.worst_case("a.example", dns.Options())
    assert openvpn.worst_case("openvpn://127.0.0.1", openvpn.Options(timeout=2.0)) == pytest.approx(2 + 2 + 2.0)


def test_openvpn_counts_the_control_phase_when_the_config_has_a_ca(tmp_path):
    openvpn = registry.load("openvpn")
    toml = tmp_path / "c.toml"
    toml.write_text('ca = "ca.pem"\ntimeout = 3.0\n', encoding="utf-8")
    ovpn = tmp_path / "c.ovpn"
    ovpn.write_text("client\nremote 127.0.0.1 1194\nca ca.pem\n", encoding="utf-8")
    for cfg in (toml, ovpn):
        with_ca = openvpn.worst_case("openvpn://127.0.0.1", openvpn.Options(config=str(cfg), timeout=3.0))
        assert with_ca == pytest.approx(3 + 3 + 3 * 3 + 2.0), cfg


def test_recorders_made_inside_a_watched_task_are_collected():
    seen: list[Recorder] = []

    async def probe() -> None:
        watch_recorders(seen)
        rec = Recorder()
        rec.begin("connect", address="127.0.0.1:1").ok()
        rec.begin("tls_handshake", 1, server_name="a.example")  # still in progress
        await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.create_task(probe())
        Recorder()  # outside the watched task: not collected

    asyncio.run(main())
    assert len(seen) == 1
    assert [o["operation"] for o in seen[0].to_list()] == ["connect"]
    [open_op] = seen[0].unfinished()
    assert open_op["operation"] == "tls_handshake" and open_op["server_name"] == "a.example"
    assert open_op["parent_id"] == 1


def test_finished_steps_are_no_longer_unfinished():
    rec = Recorder()
    a = rec.begin("connect")
    b = rec.begin("connect")
    a.fail("connection_reset")
    assert [u["operation"] for u in rec.unfinished()] == ["connect"]
    b.ok()
    assert rec.unfinished() == []


def test_runner_module_documents_the_watchdog():
    assert "worst_case" in (runner_mod.__doc__ or "")
    assert "worst_case" in (registry.__doc__ or "")
