"""VPN and circumvention probes against real servers in the lab, unblocked and blocked.

One session lab (tests/lab/conftest.py); every scenario used here runs *all* VPN
servers (the shipped scenarios' censors with the server list of ``vpn-baseline``),
so switching only reloads the censor. Verdicts come from the verdict engine with
the control namespace's measurement as the control, as ``lab evaluate`` does for
these probes. Probe timeouts are short: a blocked handshake costs seconds, not minutes.
"""

from __future__ import annotations

import dataclasses

import pytest
from vpnlab import T, failures, judge, wg_options

from censorscope.lab import scenario as scenario_mod

pytestmark = pytest.mark.lab

FAST = {"timeout": 3.0}
ALL = scenario_mod.load("vpn-baseline").vpn


def with_all_servers(name: str, **censor_overrides: object) -> scenario_mod.Scenario:
    """A shipped scenario running every VPN server (its censor tables optionally overridden)."""
    sc = scenario_mod.load(name)
    censor = tuple(dict(c, **censor_overrides) for c in sc.censor)
    return dataclasses.replace(sc, vpn=ALL, censor=censor)


#: (probe, target key, extra options) of every server (wireguard's keys are added per lab)
UNBLOCKED = [
    ("openvpn", "openvpn-udp", {}), ("openvpn", "openvpn-tcp", {}), ("wireguard", "wireguard", {}),
    ("ikev2", "ikev2", {}), ("pptp", "pptp", {}), ("l2tp", "l2tp", {}), ("ssh", "ssh", {}),
    ("tor", "tor", {}), ("quic", "quic", {}), ("socks", "socks", {}), ("httpconnect", "httpconnect", {}),
    ("sstp", "sstp", {}),
    ("fet", "fet", {"attempts": 3, "followups": 1, "followup_delay": 0.2, "interval": 0.05}),
]


def _opts(lab, probe: str, extra: dict) -> dict:
    return {**extra, **(wg_options(lab) if probe == "wireguard" else {})}


def test_every_vpn_probe_reaches_its_real_server_unblocked(use_scenario):
    lab = use_scenario("vpn-baseline")
    # the network rule: tor (and every other server) runs where nothing outside the lab is routed
    for fam in ("-4", "-6"):
        assert lab.topo.run("server", ["ip", fam, "route", "show", "default"]).stdout.strip() == ""
    assert lab.topo.procs["vpn-tor"].poll() is None
    wrong = []
    for probe, key, extra in UNBLOCKED:
        verdict, method, rec = judge(lab, probe, T[key], **_opts(lab, probe, extra))
        if verdict != "ok" or any(f for _, f in failures(rec)):
            wrong.append((key, verdict, method, failures(rec)))
    assert not wrong, wrong


def _ss_config(tmp_path) -> str:
    from censorscope.lab import addressing as A
    from censorscope.lab.vpn_servers import SS_METHOD, SS_PASSWORD

    cfg = tmp_path / "ss.toml"
    cfg.write_text(f'ss_password = "{SS_PASSWORD}"\nss_method = "{SS_METHOD}"\nss_dest = "{A.SERVER_V4}:80"\n'
                   "timeout = 3.0\n")
    return str(cfg)


def _ss_round_trip(lab, tmp_path) -> dict:
    from vpnlab import probe_in

    obs = probe_in(lab, "client", "fet", "fet://203.0.113.40:8388", config=_ss_config(tmp_path),
                   shadowsocks_only=True)
    return [o for o in obs if o["operation"] == "shadowsocks_round_trip"][0]


def test_shadowsocks_round_trip_through_the_lab_ss_server(use_scenario, tmp_path):
    lab = use_scenario("vpn-baseline")
    rt = _ss_round_trip(lab, tmp_path)
    assert rt["failure"] is None and rt["response_head"].startswith("HTTP/1.1 "), rt
    assert rt["first_packet_exemptions"] in ([], ["ex1_popcount"])  # random-looking, as the GFW sees it


def test_a_really_down_vpn_server_is_down_not_blocked(use_scenario):
    lab = use_scenario("vpn-baseline")
    for probe, target in (("openvpn", "openvpn://203.0.113.251:1194?proto=tcp"),
                          ("openvpn", "openvpn://203.0.113.251:1194?proto=udp"),
                          ("ssh", "ssh://203.0.113.251:22")):
        verdict, method, rec = judge(lab, probe, target, **FAST)
        assert verdict in ("down", "inconclusive"), (target, verdict, method, failures(rec))
        if "proto=udp" not in target:  # TCP: both sides fail alike -> down
            assert verdict == "down", (target, verdict, method)


@pytest.mark.parametrize("scenario,probe,key,method", [
    ("vpn-openvpn-fingerprint", "openvpn", "openvpn-udp", "vpn.openvpn.blocked.port_or_fingerprint"),
    ("vpn-openvpn-fingerprint", "openvpn", "openvpn-tcp", "vpn.openvpn.blocked.fingerprint"),
    ("vpn-wireguard-drop", "wireguard", "wireguard", "vpn.wireguard.blocked.port_or_fingerprint"),
    ("vpn-port-block", "ikev2", "ikev2", "vpn.ikev2.blocked.port_or_fingerprint"),  # alone: UDP
    ("vpn-port-block", "pptp", "pptp", "vpn.pptp.blocked.port"),
    ("vpn-port-block", "l2tp", "l2tp", "vpn.l2tp.blocked.port_or_fingerprint"),
    ("vpn-port-block", "sstp", "sstp", "vpn.sstp.blocked.port"),
    ("vpn-tor-blackhole", "tor", "tor", "vpn.tor.blocked.port"),
    ("vpn-quic-sni", "quic", "quic", "quic.blocked"),
])
def test_blocked_vpn_protocol_detected_and_bystanders_ok(use_scenario, scenario, probe, key, method):
    lab = use_scenario(with_all_servers(scenario), fresh=True)
    verdict, got, rec = judge(lab, probe, T[key], **_opts(lab, probe, FAST))
    assert (verdict, got) == ("blocked", method), (verdict, got, failures(rec))
    # negative control in the same censored lab: SSH (never targeted by these censors) is ok
    verdict, got, rec = judge(lab, "ssh", T["ssh"], **FAST)
    assert verdict == "ok", (verdict, got, failures(rec))


def test_openvpn_fingerprinting_is_not_port_blocking(use_scenario):
    """A non-OpenVPN flow to the OpenVPN port passes; OpenVPN is recognised by its opcodes."""
    lab = use_scenario(with_all_servers("vpn-openvpn-fingerprint"), fresh=True)
    verdict, _, rec = judge(lab, "tcp", "203.0.113.40:1195", **FAST)
    assert verdict == "ok", failures(rec)


def test_fet_blocked_by_exemption_rules_and_exempt_traffic_is_not(use_scenario, tmp_path):
    # short residual window and p = 1 keep this quick and deterministic
    lab = use_scenario(with_all_servers("vpn-fet", probability=1.0, residual=4.0), fresh=True)
    verdict, method, rec = judge(lab, "fet", T["fet"], attempts=2, followups=1, followup_delay=0.2,
                                 interval=0.05, read_timeout=1.5, timeout=2.0)
    assert (verdict, method) == ("blocked", "vpn.fet.blocked.residual"), failures(rec)
    # a real Shadowsocks connection (random-looking first packet) is caught too
    rt = _ss_round_trip(lab, tmp_path)
    assert rt["failure"] == "generic_timeout_error", rt
    # exempt payloads to the same server and the same port after the window: never called blocked
    import time
    time.sleep(4.5)
    verdict, method, rec = judge(lab, "ssh", T["ssh"], **FAST)
    assert verdict == "ok", (verdict, method, failures(rec))
    verdict, method, rec = judge(lab, "tcp", "203.0.113.40:9999", **FAST)
    assert verdict == "ok", (verdict, method, failures(rec))


@pytest.mark.parametrize("scenario,probe,method", [
    ("vpn-tor-blackhole", "tor", "vpn.tor.blocked.port"),
    # the truth targets carry {wg_config}: evaluate fills in this lab's WireGuard client keys
    ("vpn-wireguard-drop", "wireguard", "vpn.wireguard.blocked.port_or_fingerprint"),
])
def test_lab_evaluate_grades_a_vpn_scenario(use_scenario, tmp_path, scenario, probe, method):
    """``lab evaluate`` on the running lab: VPN probes measured with the control namespace as control."""
    from censorscope.lab.evaluate import _table, evaluate

    lab = use_scenario(scenario)
    rows = evaluate([lab.scenario], lab_name=lab.name, workdir=tmp_path)
    assert len(rows) == len(lab.scenario.truth)
    assert all(r.match for r in rows), _table(rows)
    assert not any(r.false_blocked for r in rows)
    assert {r.method for r in rows if r.probe == probe} == {method}
