"""The tcp probe against loopback servers: exact failure strings per way a connect can end."""

from __future__ import annotations

import asyncio
import errno
import json
import time

import pytest
from click.testing import CliRunner

from censorscope.measure.cli import cli
from censorscope.probes import tcp
from censorscope.probes.errors import InvalidTarget
from censorscope.probes.net import Net

pytestmark = pytest.mark.net


def wait_until(predicate, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` (the servers run in another thread) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run(target: str, net: Net, **options: object) -> list[dict]:
    return [o.to_dict() for o in asyncio.run(tcp.measure(target, net, tcp.Options(**options)))]


def test_connect_succeeds_and_records_the_endpoint(net, http_site):
    [obs] = run(http_site.server.address, net)
    local_port = obs.pop("local_port")
    assert isinstance(local_port, int) and local_port > 0
    t0, t = obs.pop("t0"), obs.pop("t")
    assert 0 <= t0 <= t
    assert obs == {"id": 1, "operation": "connect", "parent_id": None, "failure": None,
                   "address": http_site.server.address, "ip": "127.0.0.1", "port": http_site.server.port,
                   "proto": "tcp"}
    assert wait_until(lambda: http_site.server.connections == 1)  # one connection, nothing sent
    assert http_site.log.requests == []


def test_closed_port_is_connection_refused(net, refused_address):
    [obs] = run(refused_address, net)
    assert obs["failure"] == "connection_refused"
    assert "local_port" not in obs


def test_dropped_syn_is_a_timeout_not_a_refusal(net, blackhole_address):
    [obs] = run(blackhole_address, net, timeout=0.5)
    assert obs["failure"] == "generic_timeout_error"
    assert obs["t"] - obs["t0"] >= 0.45  # it waited for the timeout, it was not refused


def test_ipv6_loopback_refused(net, refused_address):
    port = refused_address.rsplit(":", 1)[1]
    [obs] = run(f"[::1]:{port}", net)
    assert obs["ip"] == "::1" and obs["address"] == f"[::1]:{port}"
    assert obs["failure"] in ("connection_refused", "address_not_available")  # no ::1 in some containers


class _UnreachableNet(Net):
    """A network whose connect fails like an ICMP unreachable / missing route would."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    async def open_tcp(self, host, port, *, timeout):
        raise OSError(self.code, "simulated")


@pytest.mark.parametrize("code,failure", [(errno.EHOSTUNREACH, "host_unreachable"),
                                          (errno.ENETUNREACH, "network_unreachable")])
def test_unreachable_via_injected_net(code, failure):
    # Never provoked for real: that would mean addressing a non-loopback host.
    [obs] = run("198.51.100.7:443", _UnreachableNet(code))
    assert obs["failure"] == failure


@pytest.mark.parametrize("bad", ["example.com:80", "127.0.0.1", "127.0.0.1:0", "[::1:80", ""])
def test_invalid_targets_raise(bad, net):
    with pytest.raises(InvalidTarget):
        run(bad, net)


def test_cli_json(http_site, refused_address):
    runner = CliRunner()
    res = runner.invoke(cli, ["probe", "tcp", http_site.server.address, "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert m["probe"] == "tcp" and m["probe_version"] == tcp.VERSION and m["input"] == http_site.server.address
    assert [o["failure"] for o in m["observations"]] == [None]
    res = runner.invoke(cli, ["probe", "tcp", refused_address, "--timeout", "2"])
    assert res.exit_code == 0, res.output
    assert "connection_refused" in res.output
    res = runner.invoke(cli, ["probe", "tcp", "example.com:80"])
    assert res.exit_code == 2 and "IP:PORT" in res.output


@pytest.mark.parametrize("probe,target,options", [
    ("tcp", "127.0.0.1:80", {"timeout": 0}),
    ("tls", "127.0.0.1:443", {"timeout": -1}),
    ("http", "http://x.test/", {"timeout": 0}),
    ("http", "http://x.test/", {"max_body_bytes": -1}),
    ("web", "http://x.test/", {"http_timeout": 0}),
])
def test_bad_options_are_config_errors(probe, target, options):
    from censorscope.probes import registry
    from censorscope.probes.errors import ConfigError

    module = registry.load(probe)
    with pytest.raises(ConfigError):
        asyncio.run(module.measure(target, Net(), module.Options(**options)))
