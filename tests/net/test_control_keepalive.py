"""ControlClient and the helper never race over an idle keep-alive connection (issue #4).

The flake: the slow-server lab scenario left one re-test's control missing
(``helper_unreachable: broken_pipe``). The request went out on a pooled
connection idle for exactly 5 s (the 3 s slow answer + 2 s re-test spacing)
just as the helper (uvicorn: 5 s idle timeout) closed it, while the client
(httpx: 5 s keep-alive expiry) still thought it usable. Guarded three ways:
the client retires idle connections well before the helper does, the helper
keeps them longer than any client, and a request that meets a connection the
server closed is sent once more on a new one.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from subprocs import stop_process

from censorscope.measure import cli_helper, control
from censorscope.measure.control import ControlClient

pytestmark = pytest.mark.net

ANSWER = json.dumps({"probe": "tcp", "failure": None, "observations": []}).encode()


def _read_request(conn: socket.socket) -> bytes | None:
    """One HTTP/1.1 request (head and Content-Length body), or None at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head


def _status(conn: socket.socket) -> bytes:
    """The status line of one HTTP/1.1 response read whole (head and Content-Length body); b"" at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return b""
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while m and len(body) < int(m.group(1)):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n", 1)[0]


def _answer(conn: socket.socket, keep_alive: bool) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(ANSWER)).encode() + b"\r\nConnection: " + (b"keep-alive" if keep_alive else b"close")
                 + b"\r\n\r\n" + ANSWER)


class DroppingServer:
    """Loopback HTTP server whose connections each answer ``answered`` requests with keep-alive, then
    read one more and close without answering (``how``: ``rst`` or ``fin``), as a server closing an idle
    connection at the moment a request arrives does. ``answered=None``: every request is answered."""

    def __init__(self, answered: int | None, how: str = "rst") -> None:
        self.answered, self.how = answered, how
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.requests = 0
        self.threads: list[threading.Thread] = []

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            served = 0
            while True:
                if _read_request(conn) is None:
                    return
                self.requests += 1
                if self.answered is not None and served >= self.answered:
                    if self.how == "rst":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                _answer(conn, keep_alive=True)
                served += 1

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def __enter__(self) -> DroppingServer:
        t = threading.Thread(target=self._accept, daemon=True)
        self.threads.append(t)
        t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for t in self.threads:
            t.join(5)


def _controls(url: str, n: int, gap: float = 0.0) -> list[dict]:
    async def go() -> list[dict]:
        out = []
        async with ControlClient(url) as c:
            for i in range(n):
                if i and gap:
                    await asyncio.sleep(gap)
                out.append(await c.control_for("tcp", "203.0.113.1:80", None))
        return out

    return asyncio.run(go())


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_request_on_a_connection_closed_under_it_is_sent_again(how):
    # every connection answers one request, then drops the next: the second control meets a pooled
    # connection the server is closing, and must be obtained on a new connection, not lost
    with DroppingServer(answered=1, how=how) as srv:
        first, second = _controls(srv.url, 2)
    assert first["failure"] is None and second["failure"] is None, (first, second)
    assert srv.connections == 2 and srv.requests == 3


def test_a_helper_that_never_answers_is_tried_twice_not_forever():
    with DroppingServer(answered=0) as srv:
        (got,) = _controls(srv.url, 1)
    assert got["failure"].startswith("helper_unreachable: ") and got["observations"] == []
    assert srv.requests == 2


def test_idle_connections_are_retired_before_the_helper_closes_them():
    # the timeouts' order is the fix: the client gives up an idle connection first
    assert control.KEEPALIVE_EXPIRY < cli_helper.KEEP_ALIVE_TIMEOUT
    assert control.KEEPALIVE_EXPIRY < 5.0  # uvicorn's default, for helpers run some other way
    with DroppingServer(answered=None) as srv:
        _controls(srv.url, 2)
        assert srv.connections == 1  # reused while fresh
        _controls(srv.url, 2, gap=control.KEEPALIVE_EXPIRY + 1.0)
        assert srv.connections == 3  # a new client (1 connection), then a new one after the idle gap


def test_helper_serve_keeps_an_idle_connection_past_uvicorns_default():
    """`censorscope helper serve` must not close a keep-alive connection idle for 5 s (uvicorn's default)."""
    exe = Path(sys.executable).with_name("censorscope")
    p = subprocess.Popen([str(exe), "helper", "serve", "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", p.stderr.readline())
        assert m
        request = b"GET /v1/health HTTP/1.1\r\nHost: helper\r\nConnection: keep-alive\r\n\r\n"
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=30) as s:
            s.sendall(request)
            assert _status(s) == b"HTTP/1.1 200 OK"
            time.sleep(6.0)
            s.sendall(request)
            assert _status(s) == b"HTTP/1.1 200 OK", "the helper closed an idle connection after 5 s"
    finally:
        stop_process(p)
