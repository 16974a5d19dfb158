"""Names through the helper's own resolver (a loopback DNS server): pre-check of every
address, DNS controls asked of the helper's resolver, and the throughput probe's resolve step."""

from __future__ import annotations

import asyncio

import dns.rdatatype
import httpx
import pytest
from dns_servers import UDPServer, answer, no_data
from helper_support import HelperThread
from throughput_server import ObjectServer

from censorscope.measure.control import ControlClient
from censorscope.measure.helper import HelperConfig
from censorscope.probes import dns as dns_probe
from censorscope.probes import throughput
from censorscope.probes.net import Net

pytestmark = pytest.mark.net

ZONE = {
    "site.example.test": ["127.0.0.1"],
    "mixed.example.test": ["127.0.0.1", "10.0.0.5"],  # one public-looking (allowed) answer, one private
    "inside.example.test": ["192.168.7.7"],
    "cdn.example.test": ["127.0.0.1"],
}


def zone(query):
    q = query.question[0]
    name = q.name.to_text().rstrip(".")
    want = [ip for ip in ZONE.get(name, []) if (":" in ip) == (q.rdtype == dns.rdatatype.AAAA)]
    return [(0, answer(query, *want) if want else no_data(query), "server")]


def post(url, body):
    with httpx.Client(trust_env=False, timeout=60) as c:
        return c.post(url + "/v1/measure", json=body)


def test_every_resolved_address_is_checked():
    with UDPServer(zone) as resolver, HelperThread(HelperConfig(
            allow=["127.0.0.0/8"], resolver=resolver.address, rate=1000, burst=1000)) as h:
        r = post(h.url, {"probe": "throughput", "target": "http://mixed.example.test/x"})
        assert r.status_code == 403 and "mixed.example.test -> 10.0.0.5" in r.json()["detail"]
        r = post(h.url, {"probe": "http", "target": "http://inside.example.test/"})
        assert r.status_code == 403 and "192.168.7.7" in r.json()["detail"]
        asked = {q.question[0].name.to_text() for q, _ in resolver.queries}
        assert {"mixed.example.test.", "inside.example.test."} <= asked


def test_dns_control_asks_the_helpers_resolver_not_the_vantages():
    async def go(url):
        async with ControlClient(url) as c:
            # the vantage's resolver (an ISP's, say) is not forwarded
            return await c.control_for("dns", "site.example.test",
                                       dns_probe.Options(resolver="198.51.100.53", hold_window=0.2))

    with UDPServer(zone) as resolver, HelperThread(HelperConfig(
            allow=["127.0.0.0/8"], resolver=resolver.address, rate=1000, burst=1000)) as h:
        control = asyncio.run(go(h.url))
    assert control["failure"] is None, control
    (q,) = control["observations"]
    assert q["operation"] == "dns_query" and q["resolver"] == resolver.address
    assert q["addresses"] == ["127.0.0.1"] and q["failure"] is None
    assert control["options"]["resolver"] == resolver.address


def test_throughput_resolves_names_with_the_given_resolver():
    async def go(resolver):
        server = ObjectServer(size=5000)
        port = await server.start()
        try:
            obs = await throughput.measure(f"http://cdn.example.test:{port}/o", Net(),
                                           throughput.Options(resolver=resolver, timeout=5))
            return [o.to_dict() for o in obs], server
        finally:
            await server.stop()

    with UDPServer(zone) as resolver:
        obs, server = asyncio.run(go(resolver.address))
        (res,) = [o for o in obs if o["operation"] == "resolve"]
        assert res["addresses"] == ["127.0.0.1"] and res["resolver"] == resolver.address
        connect = [o for o in obs if o["operation"] == "connect"][0]
        assert connect["ip"] == "127.0.0.1"
        assert [o for o in obs if o["operation"] == "throughput"][0]["bytes"] == 5000
        # a name that does not resolve is recorded, not raised
        missing = asyncio.run(throughput.measure("http://nowhere.example.test/", Net(),
                                                 throughput.Options(resolver=resolver.address, timeout=2)))
    assert [o.operation for o in missing] == ["resolve"]
    assert missing[0].failure == "dns_no_answer"
