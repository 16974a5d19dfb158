"""The plumbing the VPN probes share (probes.vpn_common): outcomes without an answer, proxy
destinations, target + config loading, target_from_url."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from censorscope.probes import registry
from censorscope.probes.errors import InvalidTarget
from censorscope.probes.observation import Recorder
from censorscope.probes.vpn_common import (
    fail_unanswered,
    parse_target,
    proxy_destination,
    target_and_config,
    url_targets,
)


def _step():
    rec = Recorder(lambda: 0.0)
    return rec.begin("x_handshake", None)


@pytest.mark.parametrize(("parse_error", "responses", "failure", "want"), [
    ("bad length", [{"size": 3}], "generic_timeout_error", "unknown_failure: protocol_error: bad length"),
    (None, [{"size": 3}], None, "unknown_failure: protocol_error: no reply among the responses"),
    (None, [], "connection_refused", "connection_refused"),
    (None, [], None, "generic_timeout_error"),
])
def test_fail_unanswered_names_the_most_telling_cause(parse_error, responses, failure, want):
    obs = fail_unanswered(_step(), {"responses": responses}, parse_error=parse_error, responses=responses,
                          wanted="reply among the responses", failure=failure)
    assert obs.failure == want and obs.to_dict()["responses"] == responses


def test_proxy_destination_precedence_and_errors():
    opts = SimpleNamespace(dest="198.51.100.7:80")
    assert proxy_destination(parse_target("socks://203.0.113.1:1080?dest=[2001:db8::1]:443", "socks", 1080),
                             opts, {"dest": "x:1"}, "socks") == ("[2001:db8::1]:443", "2001:db8::1", 443)
    t = parse_target("203.0.113.1:1080", "socks", 1080)
    assert proxy_destination(t, opts, {"dest": "x:1"}, "socks") == ("198.51.100.7:80", "198.51.100.7", 80)
    assert proxy_destination(t, SimpleNamespace(dest=None), {"dest": "example.test:8443"}, "httpconnect")[1:] \
        == ("example.test", 8443)
    with pytest.raises(InvalidTarget, match="httpconnect needs a destination"):
        proxy_destination(t, SimpleNamespace(dest=None), {}, "httpconnect")
    with pytest.raises(InvalidTarget, match="bad dest"):
        proxy_destination(t, SimpleNamespace(dest="no-port"), {}, "socks")


def test_target_and_config_prefers_the_targets_config(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("timeout = 1.5\n")
    b.write_text("timeout = 9.0\n")
    t, cfg = target_and_config(f"ssh://203.0.113.9:2222?config={a}", "ssh", 22, str(b))
    assert (t.host, t.port, cfg["timeout"], cfg["_dir"]) == ("203.0.113.9", 2222, 1.5, str(tmp_path))
    assert target_and_config("203.0.113.9", "ssh", 22, str(b))[1]["timeout"] == 9.0
    assert target_and_config("203.0.113.9", "ssh", 22, None) == (parse_target("203.0.113.9", "ssh", 22), {})


@pytest.mark.parametrize("name", ["openvpn", "wireguard", "ikev2", "pptp", "l2tp", "sstp", "ssh", "tor", "fet",
                                  "socks", "httpconnect"])
def test_target_from_url_takes_its_own_scheme_only(name):
    module = registry.load(name)
    assert module.target_from_url(f" {name}://203.0.113.4:1 ") == f"{name}://203.0.113.4:1"
    assert module.target_from_url("https://example.test/") is None
    assert f"``{name}://...``" in module.target_from_url.__doc__
    assert url_targets(name)("203.0.113.4:1") is None
