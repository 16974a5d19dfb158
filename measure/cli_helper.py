"""``censorscope helper serve``: run the control helper (see ``censorscope.measure.helper``)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys

import click

from censorscope.measure.helper import HelperConfig, create_app
from censorscope.probes.net import format_host_port, split_host_port

DEFAULT_LISTEN = "127.0.0.1:8742"
#: Seconds an idle client connection is kept open: longer than any client keeps an idle pooled
#: connection (``control.KEEPALIVE_EXPIRY``, httpx's default 5 s), so the client, not the helper,
#: closes it and no request meets a connection being closed (uvicorn's default is 5 s).
KEEP_ALIVE_TIMEOUT = 30


def _bind(listen: str) -> socket.socket:
    try:
        if listen.endswith(":0"):  # any free port (split_host_port only takes 1-65535)
            host, port = split_host_port(listen[:-2] + ":1")[0], 0
        else:
            host, port = split_host_port(listen)
        ip = ipaddress.ip_address(host)
    except ValueError as e:
        raise click.BadParameter(f"expected IP:PORT or [IPv6]:PORT, got {listen!r} ({e})", param_hint="--listen") from None
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the socket says
    # TCP; without it a response's head and body (two writes) meet Nagle and the client's delayed
    # ACK, ~40 ms per request on a kept-alive connection (43 ms -> 0.5 ms measured on loopback)
    sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((str(ip), port))
        sock.listen(2048)  # listen now: clients that connect before uvicorn is up wait in the backlog
    except OSError as e:
        sock.close()
        raise click.ClickException(f"cannot listen on {listen}: {e.strerror or e}") from None
    return sock


def _check_cidrs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return list(values)


@click.group()
def helper() -> None:
    """The control helper: run it on an uncensored host; point `censorscope run --control` at it."""


@helper.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="ADDR:PORT",
              help="Address and port to listen on (port 0: any free port). Use 0.0.0.0:PORT on a VPS.")
@click.option("--token", envvar="CENSORSCOPE_HELPER_TOKEN", metavar="T",
              help="Require 'Authorization: Bearer T' (or $CENSORSCOPE_HELPER_TOKEN; the variable keeps it out of ps).")
@click.option("--allow", multiple=True, metavar="CIDR", callback=_check_cidrs,
              help="Allow targets in this network even if private/loopback/documentation. Repeatable.")
@click.option("--resolver", metavar="IP[:PORT]",
              help="Resolver for names in requests and for probes given none [default: this host's resolver].")
@click.option("--rate", type=click.FloatRange(min=0.01), default=5.0, show_default=True,
              help="Requests per second allowed per client (token bucket).")
@click.option("--burst", type=click.IntRange(min=1), default=20, show_default=True,
              help="Requests a client may make at once before --rate applies.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Private key (PEM) for --tls-cert.")
def serve(listen: str, token: str | None, allow: list[str], resolver: str | None, rate: float, burst: int,
          tls_cert: str | None, tls_key: str | None) -> None:
    """Serve the control API (GET /v1/health, GET /v1/whoami, POST /v1/measure).

    Targets that are private, loopback, link-local, multicast, reserved or
    documentation addresses are refused unless --allow covers them. Each
    request is logged as one JSON line on stderr (never the token).
    """
    import uvicorn

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if resolver is not None:
        try:
            ipaddress.ip_address(split_host_port(resolver, 53)[0])
        except ValueError as e:
            raise click.BadParameter(f"{resolver!r}: {e}", param_hint="--resolver") from None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    helper_log = logging.getLogger("censorscope.helper")
    helper_log.addHandler(handler)
    helper_log.setLevel(logging.INFO)
    helper_log.propagate = False

    sock = _bind(listen)
    host, port = sock.getsockname()[:2]
    app = create_app(HelperConfig(token=token, allow=allow, resolver=resolver, rate=rate, burst=burst))
    scheme = "https" if tls_cert else "http"
    click.echo(f"censorscope helper listening on {scheme}://{format_host_port(host, port)}", err=True)
    if not token and not ipaddress.ip_address(host).is_loopback:
        click.echo("warning: no --token: anyone who can reach this port can use the helper", err=True)
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, proxy_headers=False, lifespan="off",
        ssl_certfile=tls_cert, ssl_keyfile=tls_key, server_header=False, timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
    )
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
