"""Every VPN probe is reachable through ``censorscope probe NAME`` (help and a real --json run)."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner
from vpn_support import free_port

from censorscope.measure.cli import cli as main

VPN_PROBES = ["openvpn", "wireguard", "ikev2", "pptp", "l2tp", "sstp", "ssh", "tor", "fet", "quic", "socks",
              "httpconnect"]


@pytest.mark.parametrize("name", VPN_PROBES)
def test_help(name):
    res = CliRunner().invoke(main, ["probe", name, "--help"])
    assert res.exit_code == 0, res.output
    assert "--config" in res.output and "--json" in res.output


@pytest.mark.net
def test_json_run_and_bad_target():
    port = free_port(socket.SOCK_DGRAM)
    res = CliRunner().invoke(main, ["probe", "openvpn", f"openvpn://127.0.0.1:{port}?proto=udp", "--timeout", "1",
                                    "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert m["probe"] == "openvpn" and [o["operation"] for o in m["observations"]] == ["connect", "openvpn_handshake"]
    assert m["observations"][1]["failure"] == "connection_refused"
    res = CliRunner().invoke(main, ["probe", "ssh", "ssh://example.org:22"])
    assert res.exit_code == 2 and "takes an IP address" in res.output


@pytest.mark.parametrize("name", VPN_PROBES)
def test_target_from_url(name):
    from censorscope.probes import registry

    module = registry.load(name)
    assert module.target_from_url(f"{name}://127.0.0.1:1?x=1") == f"{name}://127.0.0.1:1?x=1"
    assert module.target_from_url("https://example.org/") is None


@pytest.mark.net
def test_per_target_config_parameter(tmp_path):
    from vpn_support import op, run_probe

    cfg = tmp_path / "proxy.toml"
    cfg.write_text('dest = "127.0.0.1:9"\ntimeout = 2.0\n')
    port = free_port()
    obs = run_probe("socks", f"socks://127.0.0.1:{port}?config={cfg}")  # dest only in the per-target config
    assert op(obs, "connect")["failure"] == "connection_refused"
