"""The [vpn] scenario section and the shipped VPN scenarios (parsing only; no lab)."""

from __future__ import annotations

import pytest

from censorscope.lab import scenario as scenario_mod
from censorscope.lab.vpn_servers import KINDS, targets
from censorscope.probes.errors import ConfigError

VPN_SCENARIOS = ["vpn-baseline", "vpn-openvpn-fingerprint", "vpn-port-block", "vpn-tor-blackhole", "vpn-quic-sni",
                 "vpn-fet", "vpn-wireguard-drop"]


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
    assert scenario_mod.check_method("vpn.pptp.blocked.connect_drop", "x") == "vpn.pptp.blocked.connect_drop"
    with pytest.raises(ConfigError):
        scenario_mod.check_method("vpn.pptp.blocked.Connect-Drop", "x")
