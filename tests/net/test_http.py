"""The http probe against loopback HTTP(S) servers: hops, body limits, exact failure strings."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import zlib

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from servers import BOMB_SIZE, MISSING_NAME, OTHER_NAME, TEST_NAME, TEST_TITLE, bomb_body, page_body

from censorscope.measure.cli import cli
from censorscope.probes import http
from censorscope.probes.errors import InvalidTarget
from censorscope.probes.net import Net

pytestmark = pytest.mark.net

PAGE = page_body()


def run(url: str, net: Net, **options: object) -> dict:
    [obs] = asyncio.run(http.measure(url, net, http.Options(**options)))
    assert obs.operation == "http_round_trip"
    return obs.to_dict()


def test_get_records_final_response_and_body(net, http_site):
    url = http_site.url("/")
    o = run(url, net)
    assert o["failure"] is None
    assert o["url"] == url and o["method"] == "GET" and o["address"] == http_site.server.address
    assert o["status"] == 200
    assert ["Content-Type", "text/html; charset=utf-8"] in o["headers"]
    assert o["body_length"] == len(PAGE) and o["body_sha256"] == hashlib.sha256(PAGE).hexdigest()
    assert o["body_truncated"] is False
    assert o["body_head"] == PAGE[:4096].decode("utf-8", errors="replace")
    assert o["title"] == TEST_TITLE
    assert o["hops"] == [{"url": url, "status": 200, "headers": o["headers"], "location": None,
                          "address": http_site.server.address}]
    assert ["User-Agent", http.REQUEST_HEADERS[0][1]] in o["request_headers"]
    [(method, target, headers)] = http_site.log.requests
    assert (method, target, headers["user-agent"]) == ("GET", "/", http.REQUEST_HEADERS[0][1])


def test_body_head_kib(net, http_site):
    o = run(http_site.url("/"), net, body_head_kib=1)
    assert o["body_head"] == PAGE[:1024].decode("utf-8", errors="replace")


def test_redirect_hops_are_all_kept(net, http_site):
    o = run(http_site.url("/redirect"), net)
    assert o["failure"] is None and o["status"] == 200 and o["title"] == TEST_TITLE
    assert [(h["url"], h["status"], h["location"]) for h in o["hops"]] == [
        (http_site.url("/redirect"), 302, "/"), (http_site.url("/"), 200, None)]
    assert [t for _, t, _ in http_site.log.requests] == ["/redirect", "/"]
    assert http_site.server.connections == 2  # a new connection per request, never reused


def test_redirect_loop_is_too_many_redirects_with_every_hop(net, http_site):
    o = run(http_site.url("/loop/a"), net, max_redirects=3)
    assert o["failure"] == "http_too_many_redirects"
    assert [h["url"].rsplit("/", 1)[1] for h in o["hops"]] == ["a", "b", "a", "b"]
    assert all(h["status"] == 302 for h in o["hops"])
    assert "status" not in o  # there is no final response


def test_endless_body_stops_at_the_cap(net, http_site):
    o = run(http_site.url("/endless"), net, max_body_bytes=100_000)
    assert o["failure"] is None  # a cap is our limit, not the network's failure
    assert o["status"] == 200 and o["body_truncated"] is True and o["body_length"] == 100_000
    assert o["body_sha256"] == hashlib.sha256(b"x" * 100_000).hexdigest()
    assert o["title"] is None


def test_total_timeout_keeps_partial_response(net, http_site):
    o = run(http_site.url("/trickle"), net, timeout=1.0)
    assert o["failure"] == "generic_timeout_error"
    assert o["status"] == 200 and 0 < o["body_length"] < 1_000_000 and o["body_truncated"] is False
    assert o["t"] - o["t0"] >= 0.95


def test_not_found_is_data_not_failure(net, http_site):
    o = run(http_site.url("/nothing-here"), net)
    assert o["failure"] is None and o["status"] == 404 and o["body_length"] == len(b"not found\n")


def test_https_pinned_address_keeps_host_and_sni(net, https_site):
    url = https_site.url("/")  # https://site.censorscope.test:PORT/ : a name nobody resolves
    o = run(url, net, address="127.0.0.1")
    assert o["failure"] is None and o["status"] == 200 and o["title"] == TEST_TITLE
    assert o["address"] == https_site.server.address and o["hops"][0]["address"] == https_site.server.address
    assert https_site.sni == [TEST_NAME]
    assert https_site.log.requests[0][2]["host"] == f"{TEST_NAME}:{https_site.server.port}"


@pytest.mark.parametrize("kind,failure", [
    ("expired", "ssl_invalid_certificate"),
    ("wrong_name", "ssl_invalid_hostname"),
    ("untrusted", "ssl_unknown_authority"),
])
def test_https_verification_failures(net, tls_site, kind, failure):
    site = tls_site(kind)
    o = run(site.url("/"), net, address="127.0.0.1")
    assert o["failure"] == failure and o["hops"] == []
    assert site.log.requests == []  # nothing was sent over an unverified connection


@pytest.mark.parametrize("server,scheme,failure", [
    ("reset_server", "http", "connection_reset"),
    ("reset_server", "https", "connection_reset"),
    ("eof_server", "http", "eof_error"),
    ("eof_server", "https", "eof_error"),
    ("silent_server", "http", "generic_timeout_error"),
    ("garbage_server", "https", "ssl_failed_handshake"),
])
def test_network_failures(request, net, server, scheme, failure):
    srv = request.getfixturevalue(server)
    o = run(f"{scheme}://{srv.address}/", net, timeout=1.0)
    assert o["failure"] == failure and o["hops"] == []


def test_refused(net, refused_address):
    o = run(f"http://{refused_address}/", net, address="127.0.0.1")
    assert o["failure"] == "connection_refused"


def test_mock_transport_seam():
    # The injected transport lets probe logic run without sockets.
    class MockNet(Net):
        def http_transport(self, *, ssl_context, resolve=None):
            def handler(request: httpx.Request) -> httpx.Response:
                if request.url.path == "/":
                    return httpx.Response(301, headers={"Location": "https://example.test/final"})
                return httpx.Response(200, content=b"<title> Hello &amp;\n world </title>")
            return httpx.MockTransport(handler)

    o = run("http://example.test/", MockNet())
    assert [h["status"] for h in o["hops"]] == [301, 200]
    assert o["hops"][1]["url"] == "https://example.test/final"
    assert o["title"] == "Hello & world"


@pytest.mark.parametrize("bad", ["ftp://x.test/", "x.test/path", "http:///nohost", "http://x.test:99999/"])
def test_invalid_urls(bad, net):
    with pytest.raises(InvalidTarget):
        run(bad, net)


def test_invalid_address(net):
    with pytest.raises(InvalidTarget):
        run("http://x.test/", net, address="not-an-ip")


def test_target_from_url():
    assert http.target_from_url("https://x.test/a?b") == "https://x.test/a?b"
    assert http.target_from_url("mailto:x@y.test") is None


def test_cli(https_site, pki, monkeypatch):
    monkeypatch.setenv("CENSORSCOPE_EXTRA_CA", pki.ca)
    res = CliRunner().invoke(cli, ["probe", "http", https_site.url("/redirect"), "--address", "127.0.0.1",
                                   "--max-redirects", "1", "--body-head-kib", "1", "--json"])
    assert res.exit_code == 0, res.output
    [o] = json.loads(res.output)["observations"]
    assert o["status"] == 200 and len(o["hops"]) == 2 and len(o["body_head"].encode()) <= 1024 + 3


def test_verifying_context_cache(pki, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(open(pki.ca, "rb").read())
    n = Net(ca_file=str(ca))
    first = n.tls_context(verify=True, alpn=["http/1.1"])
    assert n.tls_context(verify=True, alpn=["http/1.1"]) is first
    assert n.tls_context(verify=True) is not n.tls_context(verify=True)  # no ALPN: never shared
    os.utime(ca, (1, 1))  # the lab rewrote its CA: load it again
    assert n.tls_context(verify=True, alpn=["http/1.1"]) is not first


def test_gzip_body_is_decoded(net, http_site):
    o = run(http_site.url("/gzip"), net)
    assert o["failure"] is None and ["Content-Encoding", "gzip"] in o["headers"]
    assert o["body_length"] == len(PAGE) and o["body_sha256"] == hashlib.sha256(PAGE).hexdigest()
    assert o["title"] == TEST_TITLE and o["body_truncated"] is False


def test_decompression_bomb_stops_at_the_cap(net, http_site):
    import tracemalloc
    bomb_body()  # the server's copy, built before we measure our own memory
    tracemalloc.start()
    o = run(http_site.url("/bomb"), net, max_body_bytes=100_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert o["failure"] is None and o["body_truncated"] is True and o["body_length"] == 100_000
    assert o["body_sha256"] == hashlib.sha256(bytes(100_000)).hexdigest()
    assert peak < BOMB_SIZE // 8  # never inflated the whole bomb


def test_resolver_option_resolves_and_records(net, http_site, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"], OTHER_NAME: ["127.0.0.1"]})
    obs = [o.to_dict() for o in asyncio.run(http.measure(
        http_site.url("/elsewhere", host=TEST_NAME), net, http.Options(resolver=dns_server.address)))]
    assert [(o["operation"], o.get("query_name")) for o in obs] == [
        ("dns_query", TEST_NAME), ("dns_query", OTHER_NAME), ("http_round_trip", None)]
    assert all(o["query_type"] == "A" and o["addresses"] == ["127.0.0.1"] for o in obs[:2])
    h = obs[2]
    assert h["failure"] is None and h["status"] == 200
    assert [hop["url"] for hop in h["hops"]] == [http_site.url("/elsewhere", host=TEST_NAME),
                                               http_site.url("/", host=OTHER_NAME)]
    assert [r[2]["host"].split(":")[0] for r in http_site.log.requests] == [TEST_NAME, OTHER_NAME]


def test_redirect_to_a_host_that_does_not_resolve(net, http_site, start_dns):
    dns_server = start_dns({TEST_NAME: ["127.0.0.1"]})
    obs = [o.to_dict() for o in asyncio.run(http.measure(
        http_site.url("/nowhere", host=TEST_NAME), net, http.Options(resolver=dns_server.address)))]
    missing = [o for o in obs if o.get("query_name") == MISSING_NAME]
    assert [(o["query_type"], o["failure"]) for o in missing] == [("A", "dns_nxdomain_error"),
                                                                 ("AAAA", "dns_nxdomain_error")]
    h = obs[-1]
    assert h["failure"] == "dns_nxdomain_error" and [hop["status"] for hop in h["hops"]] == [302]


@given(st.binary(max_size=3000))
def test_extract_title_never_raises(data):
    title = http.extract_title(data + b"<title>x</title>")
    assert isinstance(title, str)


def _encode(data: bytes, how: str) -> tuple[bytes, str | None]:
    if how == "gzip":
        return gzip.compress(data, mtime=0), "gzip"
    if how == "zlib":
        return zlib.compress(data), "deflate"
    if how == "raw-deflate":
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return z.compress(data) + z.flush(), "deflate"
    return data, None


@given(st.binary(max_size=20_000), st.integers(1, 30_000), st.integers(1, 4096),
       st.sampled_from(["gzip", "zlib", "raw-deflate", "identity"]))
def test_inflater_never_exceeds_what_is_asked(data, limit, split, how):
    payload, encoding = _encode(data, how)
    inflater = http._Inflater(encoding)
    out = b""
    for i in range(0, len(payload), split):  # arrives in pieces, as from the network
        inflater.feed(payload[i:i + split])
        while piece := inflater.take(limit):
            assert len(piece) <= limit
            out += piece
    assert out == data


def test_idn_host_is_pinned(net, http_site):
    url = f"http://тест.censorscope.test:{http_site.server.port}/"
    o = run(url, net, address="127.0.0.1")
    assert o["failure"] is None and o["status"] == 200
    assert http_site.log.requests[0][2]["host"] == f"xn--e1aybc.censorscope.test:{http_site.server.port}"
