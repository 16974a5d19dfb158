"""ControlClient against the real helper on loopback, and inside a real campaign run."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from helper_support import HelperThread, LoopbackListener
from throughput_server import ObjectServer

from censorscope.measure.campaign import Campaign
from censorscope.measure.control import ControlClient, make_control_provider, options_for_control
from censorscope.measure.helper import HelperConfig
from censorscope.measure.runs import execute
from censorscope.measure.store import iter_measurements
from censorscope.probes import dns, http, tcp, throughput
from censorscope.probes.errors import ConfigError

pytestmark = pytest.mark.net

LOOP = dict(allow=["127.0.0.0/8"], rate=1000.0, burst=1000)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_options_sent_to_the_helper():
    assert options_for_control("tcp", tcp.Options(timeout=3)) == {"timeout": 3}
    sent = options_for_control("dns", dns.Options(resolver="198.51.100.53", qtype="both"))
    assert "resolver" not in sent and sent["qtype"] == "both"  # the helper asks its own resolver
    doh = options_for_control("dns", dns.Options(resolver="https://doh.example.test/dns-query", transport="doh"))
    assert doh["resolver"] == "https://doh.example.test/dns-query"
    assert options_for_control("http", http.Options(address="203.0.113.5"))["address"] == "203.0.113.5"
    assert options_for_control("tcp", None) == {}


def test_control_for_a_loopback_target():
    async def go(url):
        async with ControlClient(url) as c:
            return await c.control_for("tcp", f"127.0.0.1:{srv.port}", tcp.Options(timeout=5))

    with LoopbackListener() as srv, HelperThread(HelperConfig(**LOOP)) as h:
        control = asyncio.run(go(h.url))
    assert control["failure"] is None and control["probe"] == "tcp"
    assert control["observations"][0]["operation"] == "connect"
    assert control["observations"][0]["failure"] is None
    assert control["helper"]["url"] == h.url
    assert srv.accepted == 1


def test_unsupported_probe_gets_no_control_and_no_request():
    calls = []
    transport = httpx.MockTransport(lambda req: calls.append(req) or httpx.Response(500))
    c = ControlClient("http://127.0.0.1:9", transport=transport)
    assert asyncio.run(c.control_for("system", "example.test", None)) is None  # the host's resolver: vantage-only
    assert calls == []


def test_failures_are_recorded_not_raised():
    async def go(client, probe, target, options=None):
        async with client:
            return await client.control_for(probe, target, options)

    dead = ControlClient(f"http://127.0.0.1:{closed_port()}")
    assert asyncio.run(go(dead, "tcp", "203.0.113.1:80")) == {
        "failure": "helper_unreachable: connection_refused", "observations": []}
    with HelperThread(HelperConfig(token="right", rate=1000.0, burst=1000)) as h:
        got = asyncio.run(go(ControlClient(h.url, "wrong"), "tcp", "203.0.113.1:80"))
        assert got == {"failure": "helper_unauthorized", "observations": []}
        refused = asyncio.run(go(ControlClient(h.url, "right"), "tcp", "10.0.0.1:80"))
        assert refused["failure"].startswith("helper_refused: 10.0.0.1") and refused["observations"] == []
        bad = asyncio.run(go(ControlClient(h.url, "right"), "tcp", "203.0.113.1:80", {"timeout": "soon"}))
        assert bad["failure"].startswith("helper_bad_request: ")


def test_non_json_and_server_errors():
    def handler(req):
        if req.url.path == "/v1/measure" and b"tls" in req.content:
            return httpx.Response(200, content=b"<html>proxy page</html>")
        return httpx.Response(502, content=b"bad gateway")

    c = ControlClient("http://helper.invalid", transport=httpx.MockTransport(handler))
    assert asyncio.run(c.control_for("tls", "203.0.113.1:443", None))["failure"] == "helper_bad_response"
    assert asyncio.run(c.control_for("tcp", "203.0.113.1:443", None))["failure"] == "helper_bad_response"

    def handler2(req):
        return httpx.Response(503, json={"error": "overloaded"})
    c2 = ControlClient("http://helper.invalid", transport=httpx.MockTransport(handler2))
    assert asyncio.run(c2.control_for("tcp", "203.0.113.1:443", None))["failure"] == "helper_error: HTTP 503"


def test_rate_limit_waited_out_then_given_up():
    async def many(client, n):
        async with client:
            return [await client.control_for("tcp", f"127.0.0.1:{srv.port}", None) for _ in range(n)]

    with LoopbackListener() as srv, HelperThread(HelperConfig(allow=["127.0.0.0/8"], rate=4.0, burst=1)) as h:
        patient = asyncio.run(many(ControlClient(h.url), 3))
        assert [r["failure"] for r in patient] == [None, None, None]
        hasty = asyncio.run(many(ControlClient(h.url, deadline=0.0), 3))
        assert "helper_rate_limited" in [r["failure"] for r in hasty]


def test_whoami():
    with HelperThread(HelperConfig(**LOOP)) as h:
        assert asyncio.run(ControlClient(h.url).whoami()) == "127.0.0.1"
    assert asyncio.run(ControlClient(f"http://127.0.0.1:{closed_port()}").whoami()) is None


def test_bad_url_is_a_config_error_and_token_never_shown():
    with pytest.raises(ConfigError):
        make_control_provider("ftp://x", None)
    c = make_control_provider("http://user:pw@127.0.0.1:1/", "tok123")
    assert "tok123" not in repr(c) and "pw" not in c.base and c.base == "http://127.0.0.1:1"


def test_campaign_run_stores_controls(tmp_path):
    """A real run (http probe, loopback site) with the helper as control provider."""
    async def scenario():
        site = ObjectServer(size=1000)
        port = await site.start()
        try:
            def run():
                with HelperThread(HelperConfig(**LOOP)) as h:
                    urls = [f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b"]
                    c = Campaign(name="ctl", urls=urls, probes=["http", "throughput"], out=str(tmp_path / "o"),
                                 control_url=h.url)
                    made = []

                    def factory(url, token):
                        made.append(make_control_provider(url, token))
                        return made[-1]
                    summary = asyncio.run(execute(c, control_factory=factory))
                    assert len(made) == 1 and made[0]._client is None  # closed with the run
                    return list(iter_measurements(summary.path))
            return await asyncio.to_thread(run), site
        finally:
            await site.stop()

    measurements, site = asyncio.run(scenario())
    assert len(measurements) == 4
    for m in measurements:
        ctl = m["control"]
        assert ctl is not None and ctl["failure"] is None, ctl
        assert ctl["probe"] == m["probe"] and ctl["target"] == m["input"]
        assert "control_error" not in m["annotations"]
        ops = [o["operation"] for o in ctl["observations"]]
        assert ("http_round_trip" in ops) if m["probe"] == "http" else ("throughput" in ops)
    # every measurement was made twice: once by the vantage, once by the helper
    assert len(site.requests) == 8
    assert throughput.NAME == "throughput"
