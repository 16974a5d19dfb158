"""The web probe end to end on loopback: a small DNS server (optionally with an injector), then
TCP to every address, TLS, and HTTP over the first address that worked."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from click.testing import CliRunner
from servers import OTHER_NAME, TEST_NAME, TEST_TITLE, HttpRequestLog, http_app

from censorscope.measure.cli import cli
from censorscope.probes import web
from censorscope.probes.net import Net

pytestmark = pytest.mark.net


def run(url: str, net: Net, **options: object) -> list[dict]:
    options.setdefault("hold_window", 0.3)
    return [o.to_dict() for o in asyncio.run(web.measure(url, net, web.Options(**options)))]


def of(observations: list[dict], operation: str) -> list[dict]:
    return [o for o in observations if o["operation"] == operation]


def one(observations: list[dict], operation: str, **match: object) -> dict:
    [o] = [o for o in of(observations, operation) if all(o.get(k) == v for k, v in match.items())]
    return o


def test_http_url_through_our_resolver(net, http_site, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"]})
    url = http_site.url("/", host=TEST_NAME)
    obs = run(url, net, resolver=dns_server.address)
    assert sorted(o["operation"] for o in obs) == ["connect", "dns_query", "dns_query", "http_round_trip"]
    a = one(obs, "dns_query", query_type="A")
    aaaa = one(obs, "dns_query", query_type="AAAA")
    assert a["failure"] is None and a["addresses"] == ["127.0.0.1"] and a["resolver"] == dns_server.address
    assert aaaa["failure"] == "dns_no_answer"
    conn = one(obs, "connect")
    assert conn["failure"] is None and conn["parent_id"] == a["id"] and conn["address"] == http_site.server.address
    h = one(obs, "http_round_trip")
    assert h["parent_id"] == conn["id"] and h["failure"] is None
    assert h["status"] == 200 and h["title"] == TEST_TITLE and h["address"] == http_site.server.address
    assert http_site.log.requests[0][2]["host"] == f"{TEST_NAME}:{http_site.server.port}"
    assert sorted(dns_server.queries) == [(TEST_NAME, "A"), (TEST_NAME, "AAAA")]
    assert len({o["id"] for o in obs}) == len(obs)


def test_injected_answer_is_kept_and_both_addresses_are_tried(net, http_site, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"]}, inject={TEST_NAME: ["127.0.0.2"]})
    obs = run(http_site.url("/", host=TEST_NAME), net, resolver=dns_server.address)
    a = one(obs, "dns_query", query_type="A")
    assert [r["addresses"] for r in a["responses"]] == [["127.0.0.2"], ["127.0.0.1"]]  # forged first
    assert a["addresses"] == ["127.0.0.2"]  # what a stub resolver would have used
    forged = one(obs, "connect", ip="127.0.0.2")
    real = one(obs, "connect", ip="127.0.0.1")
    assert forged["parent_id"] == real["parent_id"] == a["id"]
    assert forged["failure"] == "connection_refused" and real["failure"] is None
    h = one(obs, "http_round_trip")
    assert h["parent_id"] == real["id"] and h["status"] == 200 and h["address"] == http_site.server.address


def test_https_forged_address_serves_an_interception_certificate(net, https_site, start_server, pki, start_dns):
    # The injected address runs a server with a certificate from an untrusted CA, on the same port.
    port = https_site.server.port
    interceptor_log = HttpRequestLog()
    start_server(http_app(interceptor_log), pki.untrusted.server_context(), host="127.0.0.2", port=port)
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"]}, inject={TEST_NAME: ["127.0.0.2"]})
    obs = run(https_site.url("/"), net, resolver=dns_server.address)
    conn_forged, conn_real = one(obs, "connect", ip="127.0.0.2"), one(obs, "connect", ip="127.0.0.1")
    assert conn_forged["failure"] is None and conn_real["failure"] is None
    tls_forged = one(obs, "tls_handshake", parent_id=conn_forged["id"])
    tls_real = one(obs, "tls_handshake", parent_id=conn_real["id"])
    assert tls_forged["failure"] is None and tls_forged["server_name"] == TEST_NAME
    assert tls_forged["verification"]["failure"] == "ssl_unknown_authority"
    assert tls_real["failure"] is None and tls_real["verification"]["ok"] is True
    assert tls_forged["peer_certificates"][0]["sha256"] == pki.untrusted.leaf_sha256
    assert tls_real["peer_certificates"][0]["sha256"] == pki.valid.leaf_sha256
    h = one(obs, "http_round_trip")  # over the first address that worked: the forged one
    assert h["parent_id"] == tls_forged["id"] and h["failure"] == "ssl_unknown_authority"
    assert h["address"] == f"127.0.0.2:{port}"
    assert interceptor_log.requests == [] and https_site.log.requests == []


def test_nxdomain_stops_after_dns(net, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"]})
    obs = run("http://missing.censorscope.test/", net, resolver=dns_server.address)
    assert [(o["operation"], o["failure"]) for o in obs] == [("dns_query", "dns_nxdomain_error")] * 2


def test_dns_timeout(net):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:  # a resolver that never answers
        mute.bind(("127.0.0.1", 0))
        obs = run(f"http://{TEST_NAME}/", net, resolver=f"127.0.0.1:{mute.getsockname()[1]}", timeout=0.5)
    assert [(o["operation"], o["failure"]) for o in obs] == [("dns_query", "generic_timeout_error")] * 2


def test_tls_reset_means_no_http(net, reset_server, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"]})
    obs = run(f"https://{TEST_NAME}:{reset_server.port}/", net, resolver=dns_server.address)
    hs = one(obs, "tls_handshake")
    assert hs["failure"] == "connection_reset" and hs["parent_id"] == one(obs, "connect")["id"]
    assert of(obs, "http_round_trip") == []


def test_ip_literal_skips_dns(net, https_site):
    obs = run(https_site.url("/", host="127.0.0.1"), net)
    assert [o["operation"] for o in obs] == ["connect", "tls_handshake", "http_round_trip"]
    assert obs[0]["parent_id"] is None and obs[1]["server_name"] is None and https_site.sni == [None, None]
    assert obs[1]["verification"]["ok"] is True  # judged against the IP address
    assert obs[2]["failure"] is None and obs[2]["parent_id"] == obs[1]["id"]


def test_system_resolver(net, http_site):
    # 'localhost' is the one name tests may resolve with getaddrinfo (/etc/hosts).
    obs = run(http_site.url("/", host="localhost"), net, resolver="system")
    res = one(obs, "resolve")
    assert res["failure"] is None and res["resolver"] == "system" and "127.0.0.1" in res["addresses"]
    v4 = one(obs, "connect", ip="127.0.0.1")
    assert v4["failure"] is None and v4["parent_id"] == res["id"]
    assert len(of(obs, "connect")) == len(res["addresses"])
    assert one(obs, "http_round_trip")["status"] == 200


def test_target_from_url():
    assert web.target_from_url("https://x.test/") == "https://x.test/"
    assert web.target_from_url("x.test") is None


def test_cli(http_site, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"]})
    res = CliRunner().invoke(cli, ["probe", "web", http_site.url("/", host=TEST_NAME), "--resolver",
                                   dns_server.address, "--hold-window", "0.2", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert m["probe"] == "web" and m["vantage"]["resolver"] == dns_server.address
    assert one(m["observations"], "http_round_trip")["status"] == 200


def test_redirect_to_another_host_uses_the_same_resolver(net, https_site, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"], OTHER_NAME: ["127.0.0.1"]})
    obs = run(https_site.url("/elsewhere"), net, resolver=dns_server.address)
    other = [o for o in of(obs, "dns_query") if o["query_name"] == OTHER_NAME]
    assert [o["addresses"] for o in other] == [["127.0.0.1"]]  # A answered: no AAAA asked
    h = one(obs, "http_round_trip")
    # the other name is not on the test certificate: verification fails on the second hop
    assert h["failure"] == "ssl_invalid_hostname" and [hop["status"] for hop in h["hops"]] == [302]
    assert (OTHER_NAME, "A") in dns_server.queries


def test_aaaa_addresses_are_connected_too(net, http_site, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1", "::1"]})
    obs = run(http_site.url("/", host=TEST_NAME), net, resolver=dns_server.address)
    aaaa = one(obs, "dns_query", query_type="AAAA")
    assert aaaa["failure"] is None and aaaa["addresses"] == ["::1"]
    v6 = one(obs, "connect", ip="::1")
    assert v6["parent_id"] == aaaa["id"] and v6["address"] == f"[::1]:{http_site.server.port}"
    assert v6["failure"] in ("connection_refused", "address_not_available")  # the site listens on v4 only
    assert one(obs, "http_round_trip")["parent_id"] == one(obs, "connect", ip="127.0.0.1")["id"]


def test_unusable_resolver_is_a_config_error(net):
    from censorscope.probes.errors import ConfigError
    with pytest.raises(ConfigError):
        run(f"http://{TEST_NAME}/", net, resolver="not-an-address")
