"""The control helper on loopback: refusals before any packet, caps, tokens, rate limit, whoami."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import types
from dataclasses import dataclass

import httpx
import pytest
from helper_support import HelperThread, LoopbackListener
from throughput_server import ObjectServer

from censorscope.measure.helper import HelperConfig
from censorscope.probes import registry
from censorscope.probes.net import Net
from censorscope.probes.observation import Recorder

pytestmark = pytest.mark.net

FAST = dict(rate=1000.0, burst=1000)


def client(token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(timeout=60, trust_env=False, headers=headers)


@pytest.fixture
def connects(monkeypatch):
    """Every connect/sendto destination attempted in this process during the test."""
    seen: list[str] = []
    orig_connect, orig_sendto = socket.socket.connect, socket.socket.sendto

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(address[0])
        return orig_connect(self, address)

    def sendto(self, data, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(args[-1][0])
        return orig_sendto(self, data, *args)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    return seen


@pytest.fixture
def spy_probes(monkeypatch):
    """Records which probe modules the helper actually ran."""
    ran: list[str] = []
    real_load = registry.load

    def load(name):
        module = real_load(name)
        wrapped = types.SimpleNamespace(**vars(module))

        async def measure(target, net, options):
            ran.append(name)
            return await module.measure(target, net, options)
        wrapped.measure = measure
        return wrapped

    monkeypatch.setattr(registry, "load", load)
    return ran


def test_health_whoami_and_unknown_routes():
    with HelperThread(HelperConfig(**FAST)) as h, client() as c:
        health = c.get(h.url + "/v1/health").json()
        assert health["status"] == "ok" and "tcp" in health["probes"] and "throughput" in health["probes"]
        who = c.get(h.url + "/v1/whoami").json()
        assert who["ip"] == "127.0.0.1" and isinstance(who["port"], int)
        assert c.get(h.url + "/v1/measure").status_code == 405
        assert c.get(h.url + "/nope").status_code == 404


FORBIDDEN = [
    ("tcp", "10.0.0.1:80", {}),
    ("tcp", "169.254.1.1:80", {}),
    ("tcp", "224.0.0.1:80", {}),
    ("tcp", "240.0.0.1:80", {}),
    ("tcp", "[::1]:80", {}),
    ("tcp", "127.0.0.1:80", {}),
    ("tcp", "198.51.100.7:80", {}),  # documentation ranges count as private
    ("tcp", "[2001:db8::1]:443", {}),
    ("tcp", "[::ffff:10.0.0.1]:80", {}),  # IPv4-mapped private
    ("tcp", "100.64.0.1:80", {}),  # CGNAT
    ("tcp", "0.0.0.0:80", {}),
    ("tcp", "localhost:80", {}),  # a name: resolved first, every address checked
    ("throughput", "http://10.0.0.1/big", {}),
    ("throughput", "http://192.168.1.1/", {}),
    ("throughput", "http://cdn.example.test/x", {"address": "172.16.0.1"}),  # pinned address checked
    ("dns", "example.org", {"resolver": "10.0.0.1"}),  # dns contacts its resolver
    ("dns", "example.org", {"resolver": "[fe80::1]:53"}),
]


@pytest.mark.parametrize(("probe", "target", "options"), FORBIDDEN, ids=[f[1] for f in FORBIDDEN])
def test_forbidden_targets_refused_before_any_packet(probe, target, options, connects, spy_probes):
    with HelperThread(HelperConfig(**FAST)) as h, client() as c:
        connects.clear()
        r = c.post(h.url + "/v1/measure", json={"probe": probe, "target": target, "options": options})
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "forbidden_target"
        assert spy_probes == []  # the probe never ran
        port = int(h.url.rsplit(":", 1)[1])
        # the only connection made is the test client's own to the helper
        assert set(connects) <= {"127.0.0.1"}, connects
        assert all(addr == "127.0.0.1" for addr in connects) and len(connects) >= 1
        assert port


def test_allowed_loopback_target_runs_the_real_probe():
    with LoopbackListener() as srv, HelperThread(HelperConfig(allow=["127.0.0.0/8"], **FAST)) as h, client() as c:
        r = c.post(h.url + "/v1/measure", json={"probe": "tcp", "target": f"127.0.0.1:{srv.port}",
                                                "options": {"timeout": 5}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["probe"] == "tcp" and body["probe_version"] and body["failure"] is None
        assert body["measurement_start_time"].endswith("Z") and body["runtime"] >= 0
        (obs,) = body["observations"]
        assert obs["operation"] == "connect" and obs["failure"] is None and obs["ip"] == "127.0.0.1"
        assert body["options"] == {"timeout": 5}


def test_allow_list_is_exact():
    # 127.0.0.0/24 allowed does not allow 127.0.1.1
    with HelperThread(HelperConfig(allow=["127.0.0.0/24"], **FAST)) as h, client() as c:
        r = c.post(h.url + "/v1/measure", json={"probe": "tcp", "target": "127.0.1.1:9"})
        assert r.status_code == 403


def test_throughput_caps_clamped_and_huge_body_bounded():
    async def scenario():
        server = ObjectServer(size=200 * 1024 * 1024)  # far more than the helper will fetch
        port = await server.start()
        try:
            def call():
                with HelperThread(HelperConfig(allow=["127.0.0.0/8"], **FAST)) as h, client() as c:
                    return c.post(h.url + "/v1/measure", json={
                        "probe": "throughput", "target": f"http://127.0.0.1:{port}/huge",
                        "options": {"max_bytes": 10**12, "max_time": 3600, "interval_ms": 1}})
            return await asyncio.to_thread(call)
        finally:
            await server.stop()

    r = asyncio.run(scenario())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["clamped_options"]) == {"max_bytes", "max_time", "interval_ms"}
    assert body["options"]["max_bytes"] == 20 * 1024 * 1024 and body["options"]["max_time"] == 15
    tp = [o for o in body["observations"] if o["operation"] == "throughput"][0]
    assert tp["stopped"] in ("max_bytes", "max_time")
    assert tp["bytes"] <= 20 * 1024 * 1024 + 70_000
    assert len(r.content) < 2 * 1024 * 1024


def test_http_huge_body_is_capped():
    async def scenario():
        server = ObjectServer(size=50 * 1024 * 1024)
        port = await server.start()
        try:
            def call():
                with HelperThread(HelperConfig(allow=["127.0.0.0/8"], **FAST)) as h, client() as c:
                    return c.post(h.url + "/v1/measure", json={
                        "probe": "http", "target": f"http://127.0.0.1:{port}/huge",
                        "options": {"max_body_bytes": 10**12, "body_head_kib": 10**6, "timeout": 30}})
            return await asyncio.to_thread(call)
        finally:
            await server.stop()

    r = asyncio.run(scenario())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["clamped_options"]) == {"max_body_bytes", "body_head_kib", "timeout"}
    (rt,) = [o for o in body["observations"] if o["operation"] == "http_round_trip"]
    assert rt["status"] == 200 and rt["body_truncated"] is True
    assert rt["body_length"] <= 1024 * 1024 + 70_000
    assert len(rt["body_head"]) <= 64 * 1024
    assert len(r.content) < 300 * 1024


def test_total_response_cap_drops_observations():
    with LoopbackListener() as srv:
        request = {"probe": "tcp", "target": f"127.0.0.1:{srv.port}"}
        with HelperThread(HelperConfig(allow=["127.0.0.0/8"], **FAST)) as h, client() as c:
            full = c.post(h.url + "/v1/measure", json=request)
        assert full.status_code == 200 and full.json()["observations"]
        cap = len(full.content) - 20
        with HelperThread(HelperConfig(allow=["127.0.0.0/8"], max_response_bytes=cap, **FAST)) as h, client() as c:
            r = c.post(h.url + "/v1/measure", json=request)
        body = r.json()
        assert r.status_code == 200
        assert body["failure"] == "helper_response_too_large" and body["observations"] == []
        assert body["response_bytes"] > cap


def test_long_strings_cut():
    from censorscope.measure.helper import cap_strings
    capped, n = cap_strings([{"body_head": "x" * 100, "hops": [{"h": "y" * 5}]}], 10)
    assert capped == [{"body_head": "x" * 10, "hops": [{"h": "y" * 5}]}] and n == 1


# --- a probe that misbehaves after the pre-check: the run-time guard ------------------------------

@dataclass
class _SneakyOptions:
    timeout: float = 5.0


async def _sneaky_measure(target, net: Net, options):
    """Looks at a loopback target, then tries a private address it 'learned' (e.g. a redirect)."""
    rec = Recorder(net.clock)
    for ip in ("127.0.0.1", "10.1.2.3"):
        step = rec.begin("connect", ip=ip, port=9)
        try:
            _, w = await net.open_tcp(ip, int(target.rsplit(":", 1)[1]), timeout=options.timeout)
            w.close()
            step.ok()
        except Exception as e:  # noqa: BLE001
            step.fail(e)
    step = rec.begin("udp_send", ip="10.1.2.4", port=53)
    sock = net.udp_socket(socket.AF_INET)
    try:
        sock.sendto(b"\x00" * 12, ("10.1.2.4", 53))
        step.ok()
    except Exception as e:  # noqa: BLE001
        step.fail(e)
    finally:
        sock.close()
    return rec.observations


def test_runtime_guard_blocks_what_the_precheck_could_not_see(monkeypatch):
    sneaky = types.ModuleType("censorscope_test_sneaky_probe")
    sneaky.NAME, sneaky.VERSION, sneaky.Options, sneaky.measure = "sneaky", "1", _SneakyOptions, _sneaky_measure
    monkeypatch.setitem(sys.modules, sneaky.__name__, sneaky)
    monkeypatch.setitem(registry.PROBES, "sneaky", sneaky.__name__)
    cfg = HelperConfig(allow=["127.0.0.0/8"], probes=("sneaky",), **FAST)
    with LoopbackListener() as srv, HelperThread(cfg) as h, client() as c:
        r = c.post(h.url + "/v1/measure", json={"probe": "sneaky", "target": f"127.0.0.1:{srv.port}"})
    assert r.status_code == 200, r.text
    body = r.json()
    first, second, udp = body["observations"]
    assert first["failure"] is None
    assert second["failure"] == "permission_denied" and udp["failure"] == "permission_denied"
    assert body["refused_destinations"][0].startswith("10.1.2.3: ")
    assert body["refused_destinations"][1].startswith("10.1.2.4: ")
    # permission_denied is the guard's EACCES: the conftest network rule, below it, would have
    # raised NetworkRuleViolation (an unknown_failure) had the attempt reached it
    assert srv.accepted == 1  # only the loopback connection happened


# --- tokens, limits, bad requests ---------------------------------------------------------------

def test_token_required_when_set(caplog):
    caplog.set_level(logging.INFO, logger="censorscope.helper")
    secret = "s3cret-token-value"
    with HelperThread(HelperConfig(token=secret, **FAST)) as h:
        with client() as c:
            r = c.get(h.url + "/v1/whoami")
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert c.post(h.url + "/v1/measure", json={"probe": "tcp", "target": "10.0.0.1:80"}).status_code == 401
            assert c.get(h.url + "/v1/health").status_code == 200  # monitoring needs no token
        with client("wrong") as c:
            assert c.get(h.url + "/v1/whoami").status_code == 401
        with client(secret) as c:
            assert c.get(h.url + "/v1/whoami").status_code == 200
            # authorised but forbidden target: still refused
            assert c.post(h.url + "/v1/measure", json={"probe": "tcp", "target": "10.0.0.1:80"}).status_code == 403
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "censorscope.helper"]
    assert {ln["outcome"] for ln in lines} >= {"unauthorized", "ok", "refused"}
    refused = [ln for ln in lines if ln["outcome"] == "refused"][0]
    assert refused["probe"] == "tcp" and refused["target"] == "10.0.0.1:80" and refused["client"] == "127.0.0.1"
    assert set(refused) == {"time", "client", "method", "path", "status", "probe", "target", "outcome", "duration"}
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text


def test_rate_limit_per_client():
    with HelperThread(HelperConfig(rate=0.05, burst=3)) as h, client() as c:
        codes = [c.get(h.url + "/v1/whoami").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = c.get(h.url + "/v1/whoami")
        assert int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "rate_limited"
        assert c.get(h.url + "/v1/health").status_code == 200


@pytest.mark.parametrize(("body", "status"), [
    ({"probe": "system", "target": "example.test"}, 400),  # not offered: the host's resolver is vantage-only
    ({"probe": "tcp", "target": ""}, 400),
    ({"probe": "tcp", "target": "127.0.0.1:80", "options": {"nope": 1}}, 400),
    ({"probe": "tcp", "target": "127.0.0.1:80", "options": {"timeout": "soon"}}, 400),
    ({"probe": "tcp", "target": "127.0.0.1:80", "extra": 1}, 400),
    ({"probe": "tcp", "target": "127.0.0.1"}, 400),  # the probe itself rejects it (no port)
    (["tcp"], 400),
    ({"probe": "tcp", "target": "x" * 20000}, 413),
])
def test_bad_requests(body, status):
    with HelperThread(HelperConfig(allow=["127.0.0.0/8"], **FAST)) as h, client() as c:
        r = c.post(h.url + "/v1/measure", json=body)
        assert r.status_code == status, r.text
        assert "error" in r.json()


def test_non_json_body():
    with HelperThread(HelperConfig(**FAST)) as h, client() as c:
        r = c.post(h.url + "/v1/measure", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_web_probe_through_the_helper():
    async def scenario():
        server = ObjectServer(size=2000)
        port = await server.start()
        try:
            def call():
                with HelperThread(HelperConfig(allow=["127.0.0.0/8"], **FAST)) as h, client() as c:
                    return c.post(h.url + "/v1/measure", json={
                        "probe": "web", "target": f"http://127.0.0.1:{port}/", "options": {"resolver": "system"}})
            return await asyncio.to_thread(call)
        finally:
            await server.stop()

    r = asyncio.run(scenario())
    assert r.status_code == 200, r.text
    ops = [o["operation"] for o in r.json()["observations"]]
    assert "connect" in ops and "http_round_trip" in ops


def test_destinations_per_probe():
    from censorscope.measure.helper_policy import destinations
    assert destinations("tcp", "203.0.113.9:80", {}) == ["203.0.113.9"]
    assert destinations("tls", "[2001:db8::1]:443", {"sni": "x.test"}) == ["2001:db8::1"]
    assert destinations("http", "https://site.test/a", {}) == ["site.test"]
    assert destinations("http", "https://site.test/a", {"address": "203.0.113.1"}) == ["203.0.113.1"]
    assert destinations("dns", "blocked.test", {"resolver": "198.51.100.53:5353"}) == ["198.51.100.53"]
    assert destinations("dns", "blocked.test", {"resolver": "https://doh.test/dns-query"}) == ["doh.test"]
    assert destinations("dns", "blocked.test", {}) == []  # the helper's own resolver
    assert destinations("web", "http://site.test/", {"resolver": "system"}) == ["site.test"]


def test_redirect_to_a_private_address_is_stopped_by_the_guard():
    """SSRF through a redirect: the pre-check saw only the loopback target (allowed)."""
    async def redirecting(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.9/internal\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario():
        server = await asyncio.start_server(redirecting, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            def call():
                with HelperThread(HelperConfig(allow=["127.0.0.0/8"], **FAST)) as h, client() as c:
                    return c.post(h.url + "/v1/measure", json={"probe": "http", "target": f"http://127.0.0.1:{port}/"})
            return await asyncio.to_thread(call)
        finally:
            server.close()
            await server.wait_closed()

    r = asyncio.run(scenario())
    assert r.status_code == 200, r.text
    body = r.json()
    (rt,) = [o for o in body["observations"] if o["operation"] == "http_round_trip"]
    assert rt["hops"][0]["status"] == 302 and rt["failure"] == "permission_denied"
    assert body["refused_destinations"][0].startswith("10.0.0.9: ")


def _health(s: socket.socket) -> None:
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: helper\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
    while len(body) < length:
        body += s.recv(4096)


def test_kept_alive_requests_are_not_held_back():
    """A request on a kept-alive connection is answered as fast as the first one on a new connection.

    Without TCP_NODELAY on the helper's connections, Nagle held each response's body behind its
    head until the client's delayed ACK: ~40 ms per control on a reused connection. Compared as a
    ratio within one run (the machine is shared)."""
    import statistics
    import time

    with HelperThread(HelperConfig(**FAST)) as h:
        address = ("127.0.0.1", int(h.url.rsplit(":", 1)[1]))
        fresh, kept = [], []
        for _ in range(15):
            with socket.create_connection(address) as s:
                t0 = time.perf_counter()
                _health(s)
                fresh.append(time.perf_counter() - t0)
        with socket.create_connection(address) as s:
            _health(s)
            for _ in range(15):
                t0 = time.perf_counter()
                _health(s)
                kept.append(time.perf_counter() - t0)
    assert statistics.median(kept) < 3 * statistics.median(fresh), (fresh, kept)
