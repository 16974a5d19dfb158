"""The control helper's rules for VPN probes (measure.helper_vpn), without sockets."""

from __future__ import annotations

import pytest

from censorscope.measure.helper_policy import HELPER_PROBES, destinations
from censorscope.measure.helper_vpn import (
    OPTIONS,
    PARAMS,
    VPN_PROBES,
    apply_caps,
    check_request,
    fet_worst_case,
    vpn_control_options,
)
from censorscope.probes import fet, openvpn, registry, socks, tor, wireguard

PUB = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="


def test_allow_lists_name_real_fields_and_never_a_path_program_or_secret():
    never = {"config", "obfs4proxy", "private_key", "preshared_key", "password", "username", "bridge",
             "shadowsocks_only"}
    for probe in VPN_PROBES:
        assert probe in HELPER_PROBES
        fields = set(registry.load(probe).Options.__dataclass_fields__)
        assert set(OPTIONS[probe]) <= fields, probe
        assert not set(OPTIONS[probe]) & never, probe
        assert "config" not in PARAMS.get(probe, {})


@pytest.mark.parametrize(("probe", "target", "values", "match"), [
    ("openvpn", "openvpn://203.0.113.1:1194", {"config": "/etc/passwd"}, "option\\(s\\) config not accepted"),
    ("tor", "203.0.113.1:443", {"obfs4proxy": "/bin/sh", "timeout": 5}, "obfs4proxy not accepted"),
    ("ssh", "ssh://203.0.113.1:22?config=x.toml", None, "target parameter 'config'"),
    ("wireguard", "wireguard://203.0.113.1:51820?pubkey=abc", {}, "base64 WireGuard public key"),
    ("socks", "socks://203.0.113.1:1080", {"dest": "a b:80"}, "HOST:PORT"),
    ("fet", "fet://203.0.113.1:443", {"timeout": float("nan")}, "at least 0"),
    ("fet", "fet://203.0.113.1:443", {"control_rule": "none"}, "one of ex1_popcount"),
])
def test_check_request_refuses(probe, target, values, match):
    with pytest.raises(ValueError, match=match):
        check_request(probe, target, values)


def test_check_request_accepts_plain_values():
    check_request("wireguard", f"wireguard://203.0.113.1:51820?pubkey={PUB}", {"pubkey": PUB, "timeout": 3})
    check_request("openvpn", "openvpn://[2001:db8::1]:1194?proto=tcp", {"proto": "udp", "hold": 99.0})
    check_request("tor", "tor://203.0.113.1:443?fp=" + "a" * 40, {"dirport": 80})


def test_caps_lower_and_raise():
    o = openvpn.Options(timeout=60.0, hold=30.0)
    assert sorted(apply_caps("openvpn", o, 60.0)) == ["hold", "timeout"] and (o.timeout, o.hold) == (10.0, 2.0)
    t = tor.Options(timeout=3.0)
    assert apply_caps("tor", t, 60.0) == [] and t.timeout == 3.0


def test_fet_attempts_fit_the_worst_case_budget():
    o = fet.Options()  # attempts 0: 16 planned at p = 0.263, 99 %
    changed = apply_caps("fet", o, 60.0)
    assert "attempts" in changed and 1 <= o.attempts < 16
    assert fet_worst_case(o, o.attempts) <= 0.9 * 60.0 < fet_worst_case(o, o.attempts + 1)
    small = fet.Options(attempts=2, interval=0.0, timeout=2.0, read_timeout=1.0)
    assert apply_caps("fet", small, 60.0) == ["interval"] and small.attempts == 2
    with pytest.raises(ValueError, match="even one attempt"):
        apply_caps("fet", fet.Options(), 10.0)


def test_fractional_floor_holds_for_a_json_integer():
    # JSON gives 0, not 0.0, for "interval": 0; the 0.05 s floor must not be cut back to int 0
    o = fet.Options(attempts=2, interval=0, timeout=2.0, read_timeout=1.0)
    assert apply_caps("fet", o, 60.0) == ["interval"] and o.interval == 0.05
    big = fet.Options(attempts=25, payload_length=5000, timeout=2.0, read_timeout=1.0, followups=0)
    apply_caps("fet", big, 600.0)
    assert (big.attempts, big.payload_length) == (20, 1024) and isinstance(big.attempts, int)


def test_proxy_dest_is_a_destination():
    assert destinations("socks", "socks://203.0.113.1:1080?dest=198.51.100.9:80", socks.Options()) == [
        "203.0.113.1", "198.51.100.9"]
    assert destinations("httpconnect", "203.0.113.1:8080", socks.Options(dest="[2001:db8::5]:443")) == [
        "203.0.113.1", "2001:db8::5"]
    assert destinations("openvpn", "openvpn://203.0.113.1:1194?proto=udp", openvpn.Options()) == ["203.0.113.1"]


def test_client_side_options():
    sent, why = vpn_control_options("wireguard", f"wireguard://203.0.113.1:51820?pubkey={PUB}",
                                    wireguard.Options(timeout=2.0))
    assert why is None and sent == {"pubkey": None, "timeout": 2.0, "retransmit": 1.0}
    assert vpn_control_options("tor", "tor://203.0.113.1:443", tor.Options())[0] == {
        "fingerprint": None, "dirport": 0, "timeout": 15.0}
    sent, why = vpn_control_options("tor", "203.0.113.1:443", tor.Options(obfs4proxy="/opt/obfs4proxy"))
    assert sent is None and "obfs4proxy" in why
    assert vpn_control_options("fet", "fet://203.0.113.1:443?x=1", None) == (
        None, "target parameter(s) x (a helper never takes file paths, programs or secrets)")
    assert vpn_control_options("pptp", "203.0.113.1:1723", {"timeout": 4.0}) == ({"timeout": 4.0}, None)


def test_every_vpn_probe_at_the_caps_fits_the_run_limit():
    """A control cut off by the helper's run limit says nothing: at the highest options the helper
    accepts, every VPN probe's declared worst case fits the budget (tor with a dir port had 64 s > 60)."""
    from censorscope.measure.helper_vpn import FET_BUDGET_SHARE, OPTIONS, VPN_PROBES, Number
    from censorscope.probes import registry

    for probe in VPN_PROBES:
        module = registry.load(probe)
        o = module.Options()
        for name, rule in OPTIONS[probe].items():
            if isinstance(rule, Number) and name not in ("attempts", "followups"):
                setattr(o, name, rule.cap if name != "dirport" else 80)
        target = "203.0.113.1:443"
        apply_caps(probe, o, 60.0, target)
        wc = getattr(module, "worst_case", None)
        if wc is not None:
            assert wc(target, o) <= FET_BUDGET_SHARE * 60.0, (probe, o)
    t = tor.Options(timeout=10.0, dirport=80)
    assert apply_caps("tor", t, 60.0, "tor://203.0.113.1:443") == ["timeout"] and 1.0 <= t.timeout < 10.0
