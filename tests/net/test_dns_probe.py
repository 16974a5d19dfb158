"""The dns probe against real DNS servers on loopback: injection, rcodes, timeouts, TCP, DoT, DoH, CLI."""

from __future__ import annotations

import asyncio
import json

import dns.message
import pytest
from click.testing import CliRunner
from dns_servers import (
    DoHServer,
    StreamServer,
    UDPServer,
    answer,
    closed_udp_port,
    make_test_pki,
    no_data,
    rcode_of,
)

from censorscope.measure.cli import cli
from censorscope.probes import dns as dnsprobe
from censorscope.probes.net import Net
from censorscope.probes.observation import Recorder

pytestmark = pytest.mark.net

FORGED, REAL = "203.0.113.66", "198.51.100.7"


def inject_then_answer(query: dns.message.Message):
    """What an on-path injector does: a forged answer at once, the resolver's own 50 ms later."""
    return [(0.0, answer(query, FORGED, ttl=9), "injector"), (0.05, answer(query, REAL, ttl=300), "server")]


def run(target: str, net: Net | None = None, **options) -> list[dict]:
    obs = asyncio.run(dnsprobe.measure(target, net or Net(), dnsprobe.Options(**options)))
    return [o.to_dict() for o in obs]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_records_injected_and_real_answer_in_order(host):
    with UDPServer(inject_then_answer, host=host) as server:
        [obs] = run("example.com", resolver=server.address, hold_window=0.5)
    assert obs["operation"] == "dns_query" and obs["failure"] is None
    assert (obs["query_name"], obs["query_type"], obs["transport"], obs["hold_window"]) == ("example.com", "A", "udp", 0.5)
    first, second = obs["responses"]
    assert first["answers"] == [{"name": "example.com", "type": "A", "ttl": 9, "data": FORGED}]
    assert second["answers"] == [{"name": "example.com", "type": "A", "ttl": 300, "data": REAL}]
    assert first["source"].endswith(f":{server.injector_port}") and second["source"].endswith(f":{server.port}")
    assert first["t"] < second["t"] <= obs["t"]
    for r in (first, second):
        assert r["query_id"] == obs["query_id"] and not r["id_mismatch"] and not r["question_mismatch"]
        assert r["rcode"] == "NOERROR" and "QR" in r["flags"] and r["ip_ttl"] == 64
    assert obs["addresses"] == [FORGED]  # the first valid response decides; analysis sees both
    [(query, _peer)] = server.queries
    assert query.id == obs["query_id"]


@pytest.mark.parametrize(("rcode", "failure"), [
    ("NXDOMAIN", "dns_nxdomain_error"), ("SERVFAIL", "dns_servfail_error"), ("REFUSED", "dns_refused_error"),
])
def test_udp_rcodes(rcode, failure):
    with UDPServer(lambda q: [(0, answer(q, rcode=rcode_of(rcode)), "server")]) as server:
        [obs] = run("blocked.example", resolver=server.address, hold_window=0.1)
    assert obs["failure"] == failure
    assert [r["rcode"] for r in obs["responses"]] == [rcode]
    assert obs["addresses"] == [] and obs["failed_step"] is None


def test_udp_no_answer():
    with UDPServer(lambda q: [(0, no_data(q), "server")]) as server:
        [obs] = run("example.com", resolver=server.address, hold_window=0.1, qtype="AAAA")
    assert obs["failure"] == "dns_no_answer" and obs["query_type"] == "AAAA"
    assert obs["responses"][0]["rcode"] == "NOERROR" and obs["responses"][0]["answers"] == []


def test_udp_timeout_when_nobody_answers():
    with UDPServer(lambda q: []) as server:
        [obs] = run("example.com", resolver=server.address, timeout=0.5, hold_window=0.1)
        assert len(server.queries) == 1
    assert obs["failure"] == "generic_timeout_error"
    assert obs["responses"] == [] and obs["icmp_errors"] == [] and obs["failed_step"] == "receive"


def test_udp_port_unreachable_is_connection_refused():
    [obs] = run("example.com", resolver=f"127.0.0.1:{closed_udp_port()}", timeout=3, hold_window=0.1)
    assert obs["failure"] == "connection_refused"
    [icmp] = obs["icmp_errors"]
    assert (icmp["source"], icmp["icmp_type"], icmp["icmp_code"]) == ("127.0.0.1", 3, 3)
    assert obs["t"] < 2.5  # ended by the ICMP error plus the hold window, not by the timeout


def test_mismatched_id_and_question_are_recorded_and_flagged():
    def behaviour(q):
        wrong_id = dns.message.from_wire(answer(q, FORGED))
        wrong_id.id = (q.id + 1) % 65536
        other = dns.message.make_query("other.example", "A")
        other.id = q.id
        return [(0, wrong_id.to_wire(), "injector"), (0.02, answer(other, FORGED), "injector"),
                (0.04, answer(q, REAL), "server")]

    with UDPServer(behaviour) as server:
        [obs] = run("example.com", resolver=server.address, hold_window=0.4)
    flags = [(r["id_mismatch"], r["question_mismatch"]) for r in obs["responses"]]
    assert flags == [(True, False), (False, True), (False, False)]
    assert obs["failure"] is None and obs["addresses"] == [REAL]


def test_only_unusable_responses_is_server_misbehaving():
    def behaviour(q):
        return [(0, b"\x12\x34garbage", "server")]

    with UDPServer(behaviour) as server:
        [obs] = run("example.com", resolver=server.address, hold_window=0.1)
    assert obs["failure"] == "dns_server_misbehaving"
    [r] = obs["responses"]
    assert r["parse_error"] and r["raw_b64"] and r["size"] == 9


def test_both_qtypes():
    with UDPServer(lambda q: [(0, answer(q, REAL if q.question[0].rdtype == 1 else "2001:db8::7"), "server")]) as s:
        observations = run("example.com", resolver=s.address, qtype="both", hold_window=0.1)
    by_type = {o["query_type"]: o for o in observations}
    assert set(by_type) == {"A", "AAAA"} and sorted(o["id"] for o in observations) == [1, 2]
    assert by_type["A"]["addresses"] == [REAL] and by_type["AAAA"]["addresses"] == ["2001:db8::7"]


def test_query_coroutine_links_parent_and_uses_given_recorder():
    with UDPServer(inject_then_answer) as server:
        async def go():
            rec = Recorder()
            parent = rec.add("connect", 0.0)
            obs = await dnsprobe.query("Example.COM.", "A", server.address, transport="udp", net=Net(), rec=rec,
                                       hold_window=0.2, timeout=2, parent_id=parent.id)
            return rec, obs
        rec, obs = asyncio.run(go())
    assert obs.parent_id == 1 and obs.id == 2 and rec.observations[-1] is obs
    assert obs.fields["query_name"] == "Example.COM" and len(obs.fields["responses"]) == 2


def test_idn_target_is_sent_as_punycode():
    with UDPServer(lambda q: [(0, answer(q, REAL), "server")]) as server:
        [obs] = run("bücher.example", resolver=server.address, hold_window=0.05)
        [(query, _)] = server.queries
    assert obs["query_name"] == "xn--bcher-kva.example"
    assert query.question[0].name.to_text() == "xn--bcher-kva.example."


# --- TCP, DoT, DoH ---------------------------------------------------------------------------

def test_tcp():
    with StreamServer(lambda q: answer(q, REAL)) as server:
        [obs] = run("example.com", resolver=f"127.0.0.1:{server.port}", transport="tcp")
    assert obs["failure"] is None and obs["transport"] == "tcp" and obs["hold_window"] is None
    [r] = obs["responses"]
    assert r["source"] == f"127.0.0.1:{server.port}" and r["ip_ttl"] is None and obs["addresses"] == [REAL]


def test_tcp_nxdomain_refused_and_eof():
    with StreamServer(lambda q: answer(q, rcode=3)) as server:
        [obs] = run("nx.example", resolver=f"127.0.0.1:{server.port}", transport="tcp")
    assert obs["failure"] == "dns_nxdomain_error"
    with StreamServer(lambda q: None) as server:
        [obs] = run("example.com", resolver=f"127.0.0.1:{server.port}", transport="tcp", timeout=3)
    assert (obs["failure"], obs["failed_step"]) == ("eof_error", "receive")
    port = server.port  # now closed
    [obs] = run("example.com", resolver=f"127.0.0.1:{port}", transport="tcp")
    assert (obs["failure"], obs["failed_step"]) == ("connection_refused", "connect")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("dns-pki"))


def test_dot_trusts_the_test_ca(pki):
    ca, ctx = pki
    with StreamServer(lambda q: answer(q, REAL), ssl_context=ctx) as server:
        [obs] = run("example.com", Net(ca_file=str(ca)), resolver=f"127.0.0.1:{server.port}", transport="dot")
        [bad] = run("example.com", Net(ca_file=None), resolver=f"127.0.0.1:{server.port}", transport="dot")
    assert obs["failure"] is None and obs["addresses"] == [REAL] and obs["tls_version"].startswith("TLS")
    assert (bad["failure"], bad["failed_step"]) == ("ssl_unknown_authority", "tls_handshake")


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_doh(pki, method):
    ca, ctx = pki
    with DoHServer(lambda q: (200, "application/dns-message", answer(q, REAL)), ctx) as server:
        [obs] = run("example.com", Net(ca_file=str(ca)), resolver=server.url, transport="doh", doh_method=method)
        [(got_method, query)] = server.requests
    assert got_method == method and query.id == 0 and obs["query_id"] == 0
    assert obs["failure"] is None and obs["addresses"] == [REAL] and obs["http_status"] == 200
    assert obs["resolver"] == server.url and obs["responses"][0]["source"].startswith("127.0.0.1:")


def test_doh_without_the_ca_fails_verification(pki):
    ca, ctx = pki
    with DoHServer(lambda q: (200, "application/dns-message", answer(q, REAL)), ctx) as server:
        [obs] = run("example.com", Net(ca_file=None), resolver=server.url, transport="doh")
    assert (obs["failure"], obs["failed_step"], obs["responses"]) == ("ssl_unknown_authority", "http_round_trip", [])


def test_doh_http_error_is_server_misbehaving(pki):
    ca, ctx = pki
    with DoHServer(lambda q: (503, "text/plain", b"busy"), ctx) as server:
        [obs] = run("example.com", Net(ca_file=str(ca)), resolver=server.url, transport="doh")
    assert (obs["failure"], obs["http_status"], obs["responses"]) == ("dns_server_misbehaving", 503, [])


# --- the command line ------------------------------------------------------------------------

def test_cli_prints_exactly_one_json_object():
    with UDPServer(inject_then_answer) as server:
        result = CliRunner().invoke(cli, [
            "probe", "dns", "example.com", "--resolver", server.address, "--hold-window", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    measurement = json.loads(lines[0])
    assert measurement["probe"] == "dns" and measurement["input"] == "example.com"
    assert measurement["vantage"]["resolver"] == server.address
    [obs] = measurement["observations"]
    assert [r["addresses"] for r in obs["responses"]] == [[FORGED], [REAL]]


def test_cli_rejects_bad_resolver_with_usage_exit_code():
    result = CliRunner().invoke(cli, ["probe", "dns", "example.com", "--resolver", "not-an-ip", "--json"])
    assert result.exit_code == 2 and "IP[:PORT]" in result.output


def test_cli_human_output_lists_every_response():
    with UDPServer(inject_then_answer) as server:
        result = CliRunner().invoke(cli, ["probe", "dns", "example.com", "--resolver", server.address,
                                          "--hold-window", "0.3"])
    assert result.exit_code == 0, result.output
    forged = [line for line in result.output.splitlines() if FORGED in line]
    real = [line for line in result.output.splitlines() if REAL in line]
    assert len(forged) == 1 and len(real) == 1
    assert f":{server.injector_port}" in forged[0] and "NOERROR" in real[0]
    assert result.output.index(FORGED) < result.output.index(REAL)


def test_without_resolver_uses_the_configured_resolver(monkeypatch):
    """No --resolver: the vantage's resolv.conf resolver is queried with our own UDP loop."""
    with UDPServer(inject_then_answer) as server:
        monkeypatch.setattr(dnsprobe, "resolver_from_resolv_conf", lambda path="/etc/resolv.conf": server.address)
        [obs] = run("example.com", hold_window=0.3)
    assert obs["resolver"] == server.address and len(obs["responses"]) == 2
