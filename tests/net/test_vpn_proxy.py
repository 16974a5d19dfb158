"""socks probe against microsocks, httpconnect against a small real CONNECT proxy; failure paths."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
from vpn_support import (
    daemon,
    free_port,
    need,
    op,
    run_probe,
    scripted_peer,
    serving_peer,
    tcp_listening,
    wait_for,
)

pytestmark = pytest.mark.net


@pytest.fixture
def echo_server():
    port, srv = serving_peer(lambda c: None)  # accept, then close
    yield port
    srv.close()


@pytest.fixture
def microsocks(tmp_path: Path):
    port = free_port()
    with daemon([need("microsocks"), "-i", "127.0.0.1", "-p", str(port)], log=tmp_path / "log"):
        wait_for(lambda: tcp_listening("127.0.0.1", port), what="microsocks")
        yield port


@pytest.fixture
def microsocks_auth(tmp_path: Path):
    port = free_port()
    argv = [need("microsocks"), "-i", "127.0.0.1", "-p", str(port), "-u", "alice", "-P", "s3cret"]
    with daemon(argv, log=tmp_path / "log"):
        wait_for(lambda: tcp_listening("127.0.0.1", port), what="microsocks")
        yield port


def test_socks_connect_ok(microsocks, echo_server):
    obs = run_probe("socks", f"socks://127.0.0.1:{microsocks}?dest=127.0.0.1:{echo_server}")
    pc = op(obs, "proxy_connect")
    assert pc["failure"] is None, pc
    assert pc["reply"] == 0 and pc["reply_text"] == "succeeded" and pc["method"] == 0
    assert pc["parent_id"] == op(obs, "connect")["id"]


def test_socks_destination_refused(microsocks):
    dead = free_port()
    obs = run_probe("socks", f"socks://127.0.0.1:{microsocks}", dest=f"127.0.0.1:{dead}")
    pc = op(obs, "proxy_connect")
    assert pc["failure"] == "unknown_failure: socks_reply: connection refused"
    assert pc["reply"] == 5


def test_socks_userpass(microsocks_auth, echo_server):
    obs = run_probe("socks", f"127.0.0.1:{microsocks_auth}", dest=f"127.0.0.1:{echo_server}",
                    username="alice", password="s3cret")
    pc = op(obs, "proxy_connect")
    assert pc["failure"] is None and pc["method"] == 2 and pc["auth_status"] == 0
    obs = run_probe("socks", f"127.0.0.1:{microsocks_auth}", dest=f"127.0.0.1:{echo_server}")
    assert op(obs, "proxy_connect")["failure"] == "unknown_failure: protocol_error: no acceptable authentication method"


def test_socks_refused_and_garbage():
    obs = run_probe("socks", f"127.0.0.1:{free_port()}", dest="127.0.0.1:80")
    assert op(obs, "connect")["failure"] == "connection_refused"
    def script(c: socket.socket) -> None:
        c.recv(100)
        c.sendall(b"\x04\x5a")
        c.recv(100)

    port, srv = scripted_peer(script)
    obs = run_probe("socks", f"127.0.0.1:{port}", dest="127.0.0.1:80", timeout=5.0)
    srv.close()
    assert op(obs, "proxy_connect")["failure"] == "unknown_failure: protocol_error: not a SOCKS5 method reply"


class _ConnectProxy:
    """A minimal real HTTP CONNECT proxy (relays bytes both ways)."""

    def __init__(self) -> None:
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, authority, _ = head.split(b"\r\n")[0].decode().split(" ")
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, _, port = authority.rpartition(":")
        try:
            ur, uw = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nProxy-Agent: test\r\n\r\n")
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\nProxy-Agent: test\r\n\r\n")

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
            w.close()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer), return_exceptions=True)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.started.set()
        self.loop.run_forever()
        server.close()


@pytest.fixture
def connect_proxy():
    p = _ConnectProxy()
    th = threading.Thread(target=p.run, daemon=True)
    th.start()
    p.started.wait(5)
    yield p.port
    p.loop.call_soon_threadsafe(p.loop.stop)
    th.join(5)


def test_httpconnect_ok_and_502(connect_proxy, echo_server):
    obs = run_probe("httpconnect", f"httpconnect://127.0.0.1:{connect_proxy}?dest=127.0.0.1:{echo_server}")
    pc = op(obs, "proxy_connect")
    assert pc["failure"] is None and pc["status"] == 200
    assert ["Proxy-Agent", "test"] in pc["headers"]
    obs = run_probe("httpconnect", f"127.0.0.1:{connect_proxy}", dest=f"127.0.0.1:{free_port()}")
    pc = op(obs, "proxy_connect")
    assert pc["failure"] == "unknown_failure: http_connect_status: 502" and pc["status"] == 502


def test_httpconnect_garbage():
    def script(c: socket.socket) -> None:
        c.recv(1000)
        c.sendall(b"SSH-2.0-x\r\n\r\n")

    port, srv = scripted_peer(script)
    obs = run_probe("httpconnect", f"127.0.0.1:{port}", dest="127.0.0.1:1", timeout=5.0)
    srv.close()
    assert op(obs, "proxy_connect")["failure"] == "unknown_failure: protocol_error: bad status line 'SSH-2.0-x'"
