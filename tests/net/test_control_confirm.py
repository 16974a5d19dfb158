"""Confirmation re-tests in a real campaign run: [confirm] table -> Confirmer -> stored attempts."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest
from helper_support import HelperThread

from censorscope.measure.campaign import Campaign, load_campaign
from censorscope.measure.control import make_control_provider
from censorscope.measure.helper import HelperConfig
from censorscope.measure.runs import execute
from censorscope.measure.store import iter_measurements
from censorscope.probes.errors import ConfigError

pytestmark = pytest.mark.net


class KeywordResetServer:
    """HTTP on 127.0.0.1: requests whose path contains 'blocked' get a RST, others a 200 page."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, reader, writer):
        line = (await reader.readline()).decode("latin-1")
        self.requests.append(line.split(" ")[1] if " " in line else line)
        await reader.readuntil(b"\r\n\r\n")
        if "blocked" in line:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    def __enter__(self):
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop).result()
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc):
        async def stop():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_reset_confirmed_by_spaced_repeats(tmp_path):
    with KeywordResetServer() as site:
        urls = [f"http://127.0.0.1:{site.port}/blocked-word", f"http://127.0.0.1:{site.port}/fine"]
        c = Campaign(name="confirm", urls=urls, probes=["http"], out=str(tmp_path / "o"),
                     confirm={"attempts": 2, "spacing": 0.2})
        summary = asyncio.run(execute(c))
        ms = list(iter_measurements(summary.path))
    first = {m["input"]: m for m in ms if m["attempt"] == 0}
    blocked = first[urls[0]]
    assert blocked["observations"][0]["failure"] == "connection_reset"
    retests = [m for m in ms if m["attempt"] > 0]
    assert sorted(m["attempt"] for m in retests) == [1, 2]
    for m in retests:
        assert m["input"] == urls[0] and m["probe"] == "http"
        assert m["annotations"]["confirms"] == blocked["measurement_id"]
        assert "probabilistic" in m["annotations"]["retest_reason"]
        assert m["observations"][0]["failure"] == "connection_reset"
    assert summary.retests == 2
    assert site.requests.count("/fine") == 1  # nothing to confirm for the clean URL


def test_down_from_the_control_too_is_not_retested(tmp_path):
    with KeywordResetServer() as site, HelperThread(HelperConfig(allow=["127.0.0.0/8"], rate=100, burst=100)) as h:
        url = f"http://127.0.0.1:{site.port}/blocked-word"
        c = Campaign(name="down", urls=[url], probes=["http"], out=str(tmp_path / "o"), control_url=h.url,
                     confirm={"attempts": 2, "spacing": 0.2})
        summary = asyncio.run(execute(c, control_factory=make_control_provider))
        ms = list(iter_measurements(summary.path))
    assert len(ms) == 1  # the control saw the same reset: the server is "down", nothing to confirm
    (m,) = ms
    assert m["control"]["observations"][0]["failure"] == "connection_reset"


def test_confirm_table_in_campaign_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[targets]\nurls = ["http://127.0.0.1:9/"]\n[confirm]\nattempts = 4\nspacing = 90\n'
                 'innocuous_sni = "www.example.org"\n', encoding="utf-8")
    c = load_campaign(f)
    assert c.confirm == {"attempts": 4, "spacing": 90, "innocuous_sni": "www.example.org"}
    assert Campaign.from_dict(c.to_dict()).confirm == c.confirm  # survives the run sidecar (resume)
    f.write_text('[targets]\nurls = ["http://127.0.0.1:9/"]\n[confirm]\nattempts = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="attempts"):
        load_campaign(f)
    f.write_text('[targets]\nurls = ["http://127.0.0.1:9/"]\n[confirm]\nspacingg = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="spacingg"):
        load_campaign(f)
    f.write_text('[targets]\nurls = ["http://127.0.0.1:9/"]\n', encoding="utf-8")
    assert load_campaign(f).confirm is None
