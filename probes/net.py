"""The network a probe uses, injected so that tests can replace it.

``Net`` is deliberately thin: a clock, trust anchors, and the few socket
operations probes need. The real implementation uses asyncio and ``ssl``;
tests may subclass it (or pass a fake with the same methods) to run probe
logic without sockets. Probes never read the host's resolver configuration
unless a probe is *about* the system resolver (``system``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

#: Environment variable naming a PEM file of extra trust anchors (the lab CA).
EXTRA_CA_ENV = "CENSORSCOPE_EXTRA_CA"


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``[V6]:PORT``, ``V6`` or ``HOST`` (with ``default_port``).

    Raises ``ValueError`` with a readable message on bad input.
    """
    value = value.strip()
    if not value:
        raise ValueError("empty address")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep:
            raise ValueError(f"unclosed '[' in {value!r}")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") > 1:  # bare IPv6, no port
        host, port_s = value, ""
    else:
        host, _, port_s = value.partition(":")
    if not host:
        raise ValueError(f"no host in {value!r}")
    if not port_s:
        if default_port is None:
            raise ValueError(f"no port in {value!r}")
        return host, default_port
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"bad port {port_s!r} in {value!r}")
    return host, int(port_s)


def format_host_port(host: str, port: int) -> str:
    """Inverse of ``split_host_port`` (brackets IPv6 literals)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Net:
    """Real network access for probes.

    ``ca_file``: extra trust anchors (PEM) added to the system store, e.g. the
    lab CA; defaults to ``$CENSORSCOPE_EXTRA_CA``. ``resolver``: the resolver
    (``IP[:PORT]``) probes use when they must resolve a name and were given
    none; ``None`` means "the system resolver" and is only used by the
    ``system`` probe and by ``web`` when no resolver was configured.
    """

    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    ca_file: str | None = field(default_factory=lambda: os.environ.get(EXTRA_CA_ENV) or None)
    resolver: str | None = None
    _verifying_contexts: dict[tuple[str | None, float | None, tuple[str, ...]], ssl.SSLContext] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    async def open_tcp(
        self, host: str, port: int, *, timeout: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to an IP address and port (no name resolution)."""
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)

    async def start_tls(
        self, writer: asyncio.StreamWriter, context: ssl.SSLContext, server_hostname: str | None, *, timeout: float
    ) -> None:
        """Upgrade an open connection to TLS in place."""
        await asyncio.wait_for(
            writer.start_tls(context, server_hostname=server_hostname), timeout
        )

    def tls_context(self, *, verify: bool = True, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A client TLS context trusting the system store plus ``ca_file``.

        With ``verify=False`` the handshake accepts any certificate, so that the
        probe can record the chain and verify it separately (see ``tls``).
        Verifying contexts *with ALPN* are cached per (ca_file, alpn): loading
        the system store costs tens of ms (~0.2 s on a slow machine). Sharing
        one is safe: Python clients resume TLS sessions only when asked to, so
        no state passes between measurements; and a caller naming its ALPN
        gets a context that httpx/httpcore re-set to that same value. Without
        ALPN a fresh context is built, because httpx would set its ALPN on a
        shared one.
        """
        if verify and alpn:
            # the file's mtime too: a lab may rewrite its CA at the same path
            key = (self.ca_file, os.path.getmtime(self.ca_file) if self.ca_file else None, tuple(alpn))
            cached = self._verifying_contexts.get(key)
            if cached is None:
                cached = self._verifying_contexts[key] = self._new_tls_context(verify=True, alpn=alpn)
            return cached
        return self._new_tls_context(verify=verify, alpn=alpn)

    def _new_tls_context(self, *, verify: bool, alpn: list[str] | None) -> ssl.SSLContext:
        if verify:
            ctx = ssl.create_default_context()
            if self.ca_file:
                ctx.load_verify_locations(self.ca_file)
        else:
            # Same protocol defaults, but no trust store to load (~20 ms a context).
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def http_transport(
        self, *, ssl_context: ssl.SSLContext, resolve: Callable[[str], Awaitable[str]] | None = None
    ) -> Any:
        """An ``httpx.AsyncBaseTransport`` that opens a fresh connection per request.

        ``resolve(host)`` returns the IP address to connect to for a host name
        (it may raise to fail the request; returning the name unchanged leaves
        it to the system resolver). The Host header and the SNI stay the URL's.
        Without ``resolve`` the system resolver (getaddrinfo) is used, as any
        HTTP client would. Tests may return ``httpx.MockTransport`` instead.
        """
        import httpcore
        import httpx

        transport = httpx.AsyncHTTPTransport(verify=ssl_context, retries=0,
                                             limits=httpx.Limits(max_keepalive_connections=0))
        if resolve is not None:
            inner = httpcore.AnyIOBackend()

            class ResolvingBackend(httpcore.AsyncNetworkBackend):
                async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                                      local_address: str | None = None, socket_options: Any = None) -> Any:
                    return await inner.connect_tcp(await resolve(host), port, timeout=timeout,
                                                   local_address=local_address, socket_options=socket_options)

                async def sleep(self, seconds: float) -> None:
                    await inner.sleep(seconds)

            # httpx has no public hook for the connection backend: swap its pool for
            # an identical one built on our backend (tests/net/test_http.py proves
            # the pinning, so an httpx upgrade that breaks this fails loudly).
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=ssl_context, max_keepalive_connections=0, retries=0, network_backend=ResolvingBackend())
        return transport

    def udp_socket(self, family: int) -> socket.socket:
        """A non-blocking UDP socket of ``family`` (AF_INET / AF_INET6)."""
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setblocking(False)
        return s
