"""Small lab servers with no Debian daemon: QUIC (aioquic, HTTP/3 ALPN), TLS over TCP beside it, TCP echo.

``python -m censorscope.lab.vpn_aux --quic ADDR:PORT --cert C --key K --echo ADDR:PORT --ready FILE``
runs in the lab's ``server`` namespace (started by ``lab/vpn_servers.py``):

- an aioquic QUIC server (ALPN ``h3``/``hq-interop``): the ``quic`` probe's handshake target;
- a TLS-over-TCP listener on the same address and port (ALPN ``h2``/``http/1.1``), so a QUIC-only
  block is told from a blocked host;
- a TCP echo server (echoes whatever a client sends first, then closes): the ``fet`` probe's
  target, answering every first payload whether or not it looks random;
- an HTTP CONNECT proxy (``--connect``): ``200`` and a byte pipe when the destination accepts,
  ``502`` when it does not; the ``httpconnect`` probe's target. It runs in the server namespace,
  which has no default route: it can reach nothing outside the lab.

It writes ``FILE`` once every listener is bound and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
from pathlib import Path


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        data = await asyncio.wait_for(reader.read(65536), 30)
        if data:
            writer.write(data)
            await writer.drain()
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _connect_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 10)
        except (OSError, ValueError, TimeoutError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _tls_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.TimeoutError, ssl.SSLError):
        await asyncio.wait_for(reader.read(1), 30)
    writer.close()


async def main(args: argparse.Namespace) -> None:
    """Serve until SIGTERM."""
    from aioquic.asyncio import serve
    from aioquic.quic.configuration import QuicConfiguration

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    closers = []
    for hostport in args.quic:
        host, port = _split(hostport)
        conf = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop"])
        conf.load_cert_chain(args.cert, args.key)
        closers.append(await serve(host, port, configuration=conf))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        closers.append(await asyncio.start_server(_tls_idle, host, port, ssl=ctx))
    for hostport in args.echo:
        host, port = _split(hostport)
        closers.append(await asyncio.start_server(_echo, host, port))
    for hostport in args.connect:
        host, port = _split(hostport)
        closers.append(await asyncio.start_server(_connect_proxy, host, port))
    Path(args.ready).write_text("ready\n")
    await stop.wait()
    for c in closers:
        c.close()


def cli() -> None:
    """Entry point."""
    p = argparse.ArgumentParser(prog="censorscope.lab.vpn_aux")
    p.add_argument("--quic", action="append", default=[], help="ADDR:PORT for QUIC (UDP) and TLS (TCP)")
    p.add_argument("--echo", action="append", default=[], help="ADDR:PORT for the TCP echo server")
    p.add_argument("--connect", action="append", default=[], help="ADDR:PORT for the HTTP CONNECT proxy")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ready", required=True)
    asyncio.run(main(p.parse_args()))


if __name__ == "__main__":
    cli()
