"""probes.throughput against a loopback HTTP(S) server serving a sized object."""

from __future__ import annotations

import asyncio
import socket

import pytest
from throughput_server import ObjectServer, self_signed_context

from censorscope.analysis.throughput_stats import compare_throughput
from censorscope.probes import throughput
from censorscope.probes.errors import InvalidTarget
from censorscope.probes.net import Net

pytestmark = pytest.mark.net


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def fetch(server: ObjectServer, url_fmt: str, **opts):
    port = await server.start()
    try:
        obs = await throughput.measure(url_fmt.format(port=port), Net(), throughput.Options(**opts))
        return [o.to_dict() for o in obs], server
    finally:
        await server.stop()


def by_op(observations, op):
    found = [o for o in observations if o["operation"] == op]
    assert len(found) == 1, observations
    return found[0]


def test_complete_download_records_samples_and_rate():
    obs, server = run(fetch(ObjectServer(size=2_000_000), "http://127.0.0.1:{port}/obj?x=1"))
    connect, tp = by_op(obs, "connect"), by_op(obs, "throughput")
    assert connect["failure"] is None and tp["parent_id"] == connect["id"]
    assert tp["failure"] is None and tp["stopped"] == "complete"
    assert tp["status"] == 200 and tp["content_length"] == 2_000_000 and tp["bytes"] == 2_000_000
    assert tp["samples"][-1][1] == 2_000_000
    ts = [s[0] for s in tp["samples"]]
    counts = [s[1] for s in tp["samples"]]
    assert ts == sorted(ts) and counts == sorted(counts)
    assert tp["rate_bps"] > 0 and tp["duration"] >= tp["ttfb"] > 0
    assert server.requests[0]["request_line"] == "GET /obj?x=1 HTTP/1.1"


def test_max_time_stops_a_slow_transfer_and_samples_show_the_pace():
    obs, _ = run(fetch(ObjectServer(size=10_000_000, rate=200_000), "http://127.0.0.1:{port}/",
                       max_time=1.0, interval_ms=50))
    tp = by_op(obs, "throughput")
    assert tp["failure"] is None and tp["stopped"] == "max_time"
    assert 0 < tp["bytes"] < 10_000_000
    assert len(tp["samples"]) >= 8  # ~20 ticks of 50 ms in 1 s; generous for a loaded machine
    assert tp["duration"] < 10  # stopped long before the object could have arrived


def test_max_bytes_caps_the_download():
    obs, _ = run(fetch(ObjectServer(size=8_000_000), "http://127.0.0.1:{port}/", max_bytes=1_000_000))
    tp = by_op(obs, "throughput")
    assert tp["stopped"] == "max_bytes"
    assert 1_000_000 <= tp["bytes"] < 1_000_000 + 70_000  # at most one read beyond the cap


def test_connection_cut_mid_body_is_eof_with_partial_data_kept():
    obs, _ = run(fetch(ObjectServer(size=1_000_000, cut_after=300_000), "http://127.0.0.1:{port}/"))
    tp = by_op(obs, "throughput")
    assert tp["failure"] == "eof_error"
    assert tp["bytes"] == 300_000 and tp["stopped"] is None
    assert tp["samples"][-1][1] == 300_000


def test_refused_connection_is_recorded_not_raised():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    obs = run(throughput.measure(f"http://127.0.0.1:{port}/", Net(), throughput.Options(timeout=5)))
    obs = [o.to_dict() for o in obs]
    assert [o["operation"] for o in obs] == ["connect"]
    assert obs[0]["failure"] == "connection_refused"


def test_pinned_address_keeps_host_header():
    obs, server = run(fetch(ObjectServer(size=1000), "http://cdn.example.test:{port}/a", address="127.0.0.1"))
    assert by_op(obs, "throughput")["bytes"] == 1000
    assert f"Host: cdn.example.test:{by_op(obs, 'connect')['port']}" in server.requests[0]["headers"]


def test_names_need_an_address_or_resolver_and_urls_are_checked():
    with pytest.raises(InvalidTarget):
        run(throughput.measure("http://cdn.example.test/", Net(), throughput.Options()))
    with pytest.raises(InvalidTarget):
        run(throughput.measure("ftp://127.0.0.1/", Net(), throughput.Options()))
    with pytest.raises(InvalidTarget):
        run(throughput.measure("http://127.0.0.1/", Net(), throughput.Options(address="not-an-ip")))
    with pytest.raises(InvalidTarget):
        run(throughput.measure("http://127.0.0.1/", Net(), throughput.Options(interval_ms=0)))


def test_sni_throttling_detected_against_innocuous_sni_on_same_address():
    """A toy SNI throttler: the real SNI is paced at 40 kB/s, any other SNI at 2 MB/s."""
    async def both():
        server = ObjectServer(size=50_000_000, rate=2_000_000, tls=self_signed_context(["blocked.example.test"]),
                              sni_rates={"blocked.example.test": 40_000})
        port = await server.start()
        try:
            url = f"https://blocked.example.test:{port}/big"
            opts = dict(address="127.0.0.1", max_time=1.5, interval_ms=50)
            real = await throughput.measure(url, Net(), throughput.Options(**opts))
            ref = await throughput.measure(url, Net(), throughput.Options(sni="innocuous.example.test", **opts))
            return [o.to_dict() for o in real], [o.to_dict() for o in ref], server
        finally:
            await server.stop()

    real, ref, server = run(both())
    assert [r["sni"] for r in server.requests] == ["blocked.example.test", "innocuous.example.test"]
    tls = by_op(real, "tls_handshake")
    assert tls["failure"] is None and tls["server_name"] == "blocked.example.test" and tls["tls_version"]
    assert by_op(real, "throughput")["parent_id"] == tls["id"]
    verdict = compare_throughput(by_op(real, "throughput")["samples"], reference=by_op(ref, "throughput")["samples"])
    assert verdict.status == "throttled", verdict
    # negative control: two innocuous transfers are not "throttled" against each other
    verdict2 = compare_throughput(by_op(ref, "throughput")["samples"], reference=by_op(ref, "throughput")["samples"])
    assert verdict2.status == "not_throttled"


def test_cli_json_output():
    import json
    import threading

    from click.testing import CliRunner

    from censorscope.measure.cli import cli

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ObjectServer(size=300_000)
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        result = CliRunner().invoke(cli, ["probe", "throughput", f"http://127.0.0.1:{port}/o", "--json",
                                          "--max-bytes", "100000", "--interval-ms", "50"])
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)
    assert m["probe"] == "throughput" and m["probe_version"] == throughput.VERSION
    tp = [o for o in m["observations"] if o["operation"] == "throughput"][0]
    assert tp["stopped"] == "max_bytes" and tp["interval"] == 0.05
