"""Servers that misbehave on their own (no censor involved), for negative controls.

- **reset**: accepts TCP connections on ports 80 and 443, reads the first data the
  client sends (an HTTP request or a TLS ClientHello) and aborts the connection
  with a RST (``SO_LINGER`` 0). From the client this looks like an injected reset,
  but the control sees the same: the server is broken, not censored.
- **slow**: serves HTTP (80) and HTTPS (443, lab-CA certificate) but waits
  ``delay`` seconds before answering each request: a slow but uncensored path.

Run inside the lab's server namespace::

    python -m censorscope.lab.misbehave --reset 203.0.113.252 --slow 203.0.113.253 \\
        --delay 2 --cert slow.pem --key slow.key --ready FILE

The ready file is written once every socket listens. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import ssl
import struct
from pathlib import Path

PORTS = (80, 443)
HEAD_LIMIT = 16384


async def _reset_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Wait for the client's first bytes, then abort with a RST."""
    try:
        await asyncio.wait_for(reader.read(4096), 10)
    except (TimeoutError, OSError):
        pass
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _page(host: str, delay: float) -> bytes:
    body = (
        f"<!doctype html><html><head><title>{host}</title></head><body><h1>{host}</h1>"
        f"<p>This lab site is served by a slow server (it waits {delay:g} s before answering).</p>"
        "</body></html>\n"
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\nServer: censorscope-lab-slow\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


def _slow_handler(delay: float) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError, ssl.SSLError):
            writer.close()
            return
        host = "slow"
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"host":
                host = value.strip().decode("ascii", "replace").rsplit(":", 1)[0] or host
        await asyncio.sleep(delay)
        try:
            writer.write(_page(host, delay))
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    return handle


async def serve(reset: list[str], slow: list[str], delay: float, cert: str | None, key: str | None,
                ready: Path | None) -> None:
    """Listen on every address/port, write ``ready``, run until SIGTERM."""
    servers = []
    tls = None
    if slow and cert and key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
    for addr in reset:
        for port in PORTS:
            servers.append(await asyncio.start_server(_reset_handler, addr, port, reuse_address=True))
    handler = _slow_handler(delay)
    for addr in slow:
        servers.append(await asyncio.start_server(handler, addr, 80, reuse_address=True, limit=HEAD_LIMIT))
        if tls is not None:
            servers.append(await asyncio.start_server(handler, addr, 443, ssl=tls, reuse_address=True,
                                                      limit=HEAD_LIMIT, ssl_handshake_timeout=30))
    if ready:
        ready.write_text("ready\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m censorscope.lab.misbehave``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reset", action="append", default=[], help="address of the resetting server")
    ap.add_argument("--slow", action="append", default=[], help="address of the slow server")
    ap.add_argument("--delay", type=float, default=2.0, help="seconds the slow server waits")
    ap.add_argument("--cert", help="PEM certificate of the slow server's HTTPS")
    ap.add_argument("--key", help="PEM key of the slow server's HTTPS")
    ap.add_argument("--ready", type=Path, help="file written once listening")
    a = ap.parse_args(argv)
    asyncio.run(serve(a.reset, a.slow, a.delay, a.cert, a.key, a.ready))


if __name__ == "__main__":
    main()
