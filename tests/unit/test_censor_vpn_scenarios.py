"""The [vpn] scenario section and the shipped VPN scenarios (parsing only; no lab)."""

from __future__ import annotations

import pytest

from censorscope.lab import scenario as scenario_mod
from censorscope.lab.vpn_servers import KINDS, targets
from censorscope.probes.errors import ConfigError

VPN_SCENARIOS = ["vpn-baseline", "vpn-openvpn-fingerprint", "vpn-port-block", "vpn-tor-blackhole", "vpn-quic-sni",
                 "vpn-fet", "vpn-fet-singled-out", "vpn-wireguard-drop"]


def test_vpn_section_parsed_and_validated():
    sc = scenario_mod.parse({"name": "x", "description": "d", "vpn": {"servers": ["ssh", "openvpn", "ssh"]}})
    assert sc.vpn == ("ssh", "openvpn")
    assert scenario_mod.parse({"name": "x", "description": "d"}).vpn == ()
    with pytest.raises(ConfigError, match="unknown server"):
        scenario_mod.parse({"name": "x", "description": "d", "vpn": {"servers": ["ipsec-magic"]}})
    with pytest.raises(ConfigError, match="unknown key"):
        scenario_mod.parse({"name": "x", "description": "d", "vpn": {"server": ["ssh"]}})


def test_vpn_addresses_are_not_site_addresses():
    with pytest.raises(ConfigError, match="VPN servers"):
        scenario_mod.parse({"name": "x", "description": "d", "site": [{"name": "a.example", "address": "203.0.113.40"}]})


@pytest.mark.parametrize("name", VPN_SCENARIOS)
def test_shipped_vpn_scenarios(name):
    sc = scenario_mod.load(name)
    assert set(sc.vpn) <= set(KINDS)
    assert any(t.verdict == "ok" for t in sc.truth)  # every one carries a negative control
    served = set(targets().values())
    for t in sc.truth:
        if "203.0.113.40" in t.target or "203.0.113.41" in t.target:
            assert t.target in served, t.target  # truth rows name the servers' real targets
    if name != "vpn-baseline":
        assert sc.censor


def test_sub_method_truths_accepted():
    for sub in ("port", "fingerprint", "port_or_fingerprint", "fet", "residual"):
        assert scenario_mod.check_method(f"vpn.pptp.blocked.{sub}", "x") == f"vpn.pptp.blocked.{sub}"
    with pytest.raises(ConfigError):
        scenario_mod.check_method("vpn.pptp.blocked.Connect-Drop", "x")


def test_vpn_truths_name_sub_methods_the_engine_can_report():
    """Every blocked VPN truth names a sub-method (how), not only vpn.<protocol>.blocked."""
    subs = {"port", "fingerprint", "port_or_fingerprint", "fet", "residual"}
    for name in VPN_SCENARIOS:
        for t in scenario_mod.load(name).truth:
            if t.verdict == "blocked" and t.method and t.method.startswith("vpn."):
                assert t.method.rsplit(".", 1)[-1] in subs, (name, t.method)


def test_expand_target_fills_the_labs_wireguard_keys(tmp_path):
    import json
    from urllib.parse import unquote

    from censorscope.lab.vpn_servers import expand_target
    from censorscope.probes.errors import LabError
    from censorscope.probes.vpn_common import config_param, parse_target

    target = targets()["wireguard-lab"]
    assert expand_target("ssh://203.0.113.40:22", tmp_path) == "ssh://203.0.113.40:22"
    with pytest.raises(LabError, match="no wireguard keys"):
        expand_target(target, tmp_path)
    d = tmp_path / "vpn" / "wireguard"
    d.mkdir(parents=True)
    (d / "client.json").write_text(json.dumps({"public_key": "ab+/cd=="}))
    got = expand_target(target, tmp_path)
    assert config_param(got) == str(d / "client.toml")
    assert parse_target(expand_target("wireguard://203.0.113.40?pubkey={wg_pubkey}", tmp_path), "wireguard",
                        51820).params["pubkey"] == "ab+/cd=="
    assert "{" not in unquote(got)
