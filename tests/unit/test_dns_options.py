"""dns and system probes without a network: options, resolv.conf, names, outcome rules, CLI shape."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from click.testing import CliRunner

from censorscope.measure.cli import cli
from censorscope.measure.cli_probe import make_options
from censorscope.probes import dns as dnsprobe
from censorscope.probes import registry
from censorscope.probes import system as sysprobe
from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.net import Net


def test_registered_and_contract():
    for name, module in (("dns", dnsprobe), ("system", sysprobe)):
        assert registry.load(name) is module
        assert module.NAME == name and module.VERSION and module.SUMMARY and module.TARGET_HELP == "NAME"


def test_cli_options_from_dataclass():
    result = CliRunner().invoke(cli, ["probe", "dns", "--help"])
    assert result.exit_code == 0
    for opt in ("--resolver", "--transport", "--qtype", "--hold-window", "--timeout", "--doh-method", "--json"):
        assert opt in result.output
    assert "udp|tcp|dot|doh" in result.output
    result = CliRunner().invoke(cli, ["probe", "system", "--help"])
    assert result.exit_code == 0 and "--family" in result.output


def test_make_options_parses_values():
    opts = make_options(dnsprobe.Options, {"resolver": "127.0.0.1:5353", "transport": "tcp", "hold_window": 0.25,
                                           "qtype": "both", "timeout": None})
    assert (opts.resolver, opts.transport, opts.hold_window, opts.qtype, opts.timeout) == (
        "127.0.0.1:5353", "tcp", 0.25, "both", 5.0)


def test_bad_transport_choice_is_a_usage_error():
    result = CliRunner().invoke(cli, ["probe", "dns", "example.com", "--transport", "quic"])
    assert result.exit_code == 2


def test_resolv_conf_parsing(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nsearch lan\n; comment\nnameserver not-an-ip\nnameserver 198.51.100.53\n"
                    "nameserver 2001:db8::53\noptions edns0\n")
    assert dnsprobe.resolver_from_resolv_conf(str(conf)) == "198.51.100.53"
    conf.write_text("nameserver fe80::1%eth0\n")
    assert dnsprobe.resolver_from_resolv_conf(str(conf)) == "fe80::1%eth0"
    conf.write_text("search lan\n")
    assert dnsprobe.resolver_from_resolv_conf(str(conf)) is None
    assert dnsprobe.resolver_from_resolv_conf(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(("value", "transport", "expected"), [
    ("198.51.100.1", "udp", ("198.51.100.1", 53)),
    ("198.51.100.1:5353", "tcp", ("198.51.100.1", 5353)),
    ("2001:db8::1", "dot", ("2001:db8::1", 853)),
    ("[2001:db8::1]:8853", "dot", ("2001:db8::1", 8853)),
])
def test_parse_resolver(value, transport, expected):
    assert dnsprobe.parse_resolver(value, transport) == expected


@pytest.mark.parametrize(("value", "transport"), [
    ("dns.example", "udp"), ("198.51.100.1:99999", "udp"), ("https://x/dns-query", "udp"), ("1.2.3.4", "doh"),
])
def test_parse_resolver_rejects(value, transport):
    with pytest.raises(ConfigError):
        dnsprobe.parse_resolver(value, transport)


def test_names():
    assert dnsprobe.normalize_name("Bücher.example.") == "xn--bcher-kva.example"
    assert dnsprobe.target_from_url("https://www.Bücher.example:8443/path?q") == "www.xn--bcher-kva.example"
    assert dnsprobe.target_from_url("example.org/x") == "example.org"
    assert dnsprobe.target_from_url("http://198.51.100.1/") is None
    for bad in ("", "a..b", "x" * 70 + ".com"):
        with pytest.raises(InvalidTarget):
            dnsprobe.normalize_name(bad)


def _resp(rcode="NOERROR", answers=(), idm=False, qm=False, parse_error=None):
    return {"rcode": rcode, "answers": [{"name": "n", "type": t, "ttl": 1, "data": d} for t, d in answers],
            "addresses": [d for t, d in answers if t in ("A", "AAAA")], "id_mismatch": idm,
            "question_mismatch": qm, "parse_error": parse_error}


def test_outcome_rules():
    icmp = [{"failure": "connection_refused"}]
    assert dnsprobe.outcome([], [], "A") == ("generic_timeout_error", [])
    assert dnsprobe.outcome([], icmp, "A") == ("connection_refused", [])
    # anything that came wins over the ICMP error
    assert dnsprobe.outcome([_resp(answers=[("A", "198.51.100.1")])], icmp, "A") == (None, ["198.51.100.1"])
    assert dnsprobe.outcome([_resp(idm=True, answers=[("A", "1.1.1.1")]), _resp("NXDOMAIN")], [], "A") == (
        "dns_nxdomain_error", [])
    assert dnsprobe.outcome([_resp(qm=True), _resp(parse_error="x")], icmp, "A") == ("dns_server_misbehaving", [])
    assert dnsprobe.outcome([_resp(answers=[("CNAME", "x.example")])], [], "A") == ("dns_no_answer", [])
    assert dnsprobe.outcome([_resp(answers=[("A", "198.51.100.1")])], [], "AAAA") == ("dns_no_answer", ["198.51.100.1"])
    assert dnsprobe.outcome([_resp("NOTIMP")], [], "A") == ("dns_server_misbehaving", [])


def test_measure_rejects_unusable_input():
    net = Net()
    with pytest.raises(ConfigError):
        asyncio.run(dnsprobe.measure("example.com", net, dnsprobe.Options(transport="doh")))
    with pytest.raises(ConfigError):
        asyncio.run(dnsprobe.measure("example.com", net, dnsprobe.Options(resolver="127.0.0.1", hold_window=-1)))
    with pytest.raises(InvalidTarget):
        asyncio.run(dnsprobe.measure("a..b", net, dnsprobe.Options(resolver="127.0.0.1")))


# --- system probe ------------------------------------------------------------------------------

def test_system_resolves_localhost():
    [obs] = asyncio.run(sysprobe.measure("localhost", Net(), sysprobe.Options(family="ipv4")))
    d = obs.to_dict()
    assert d["operation"] == "resolve" and d["failure"] is None and d["resolver"] == "system"
    assert "127.0.0.1" in d["addresses"] and len(d["addresses"]) == len(set(d["addresses"]))


@pytest.mark.parametrize(("code", "failure"), [
    (socket.EAI_NONAME, "dns_nxdomain_error"), (socket.EAI_AGAIN, "dns_temporary_failure"),
    (socket.EAI_FAIL, "dns_non_recoverable_failure"),
])
def test_system_failures_are_classified(monkeypatch, code, failure):
    def fake(*args, **kwargs):
        raise socket.gaierror(code, "fake")

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    [obs] = asyncio.run(sysprobe.measure("localhost", Net(), sysprobe.Options()))
    assert obs.failure == failure and obs.fields["addresses"] == []


def test_system_timeout(monkeypatch):
    def slow(*args, **kwargs):
        time.sleep(1.0)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    [obs] = asyncio.run(sysprobe.measure("localhost", Net(), sysprobe.Options(timeout=0.1)))
    assert obs.failure == "generic_timeout_error"


def test_system_cli_json():
    result = CliRunner().invoke(cli, ["probe", "system", "localhost", "--family", "ipv4", "--json"])
    assert result.exit_code == 0, result.output
    [line] = result.output.strip().splitlines()
    m = json.loads(line)
    assert m["probe"] == "system" and m["observations"][0]["operation"] == "resolve"
    assert "127.0.0.1" in m["observations"][0]["addresses"]
