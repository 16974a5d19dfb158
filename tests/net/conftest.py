"""Fixtures for loopback probe tests: a test PKI and servers that misbehave on purpose.

All servers listen on 127.0.0.1 (random ports) on a background asyncio loop
(``server_loop``) and are stopped after each test. Other helpers may use them;
the behaviours are documented in tests/net/servers.py.

Fixtures (session scope marked *):

- ``pki``*            TestPKI: ``ca`` (trust this), ``valid``/``expired``/``wrong_name``/``untrusted`` CertFiles
- ``server_loop``*    ServerLoop running the servers
- ``net``             ``Net(ca_file=pki.ca)``: trusts the test CA (plus the system store)
- ``start_server``    factory ``start_server(handler, tls=None, host="127.0.0.1", port=0) -> TcpServer``
- ``http_site``       Site: plain HTTP ``http_app`` (``site.url("/redirect")``, ``site.log.requests``)
- ``https_site``      Site: the same app over TLS with the valid certificate (``site.sni`` logs SNIs)
- ``tls_site``        factory ``tls_site("expired" | "wrong_name" | "untrusted" | "valid") -> Site``
- ``reset_server``, ``eof_server``, ``silent_server``, ``garbage_server``: TcpServer
- ``refused_address`` ``127.0.0.1:PORT`` where nothing listens
- ``blackhole_address`` ``127.0.0.1:PORT`` whose SYNs are dropped (full accept queue): connect times out
- ``start_dns``       factory ``start_dns(zone, inject=None) -> DnsServer``
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from servers import (
    BacklogFull,
    DnsServer,
    Handler,
    HttpRequestLog,
    ServerLoop,
    Site,
    TcpServer,
    TestPKI,
    closed_port,
    eof_on_data,
    garbage_on_data,
    http_app,
    make_pki,
    reset_on_data,
    silent,
)

from censorscope.probes.net import Net


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def server_loop() -> Iterator[ServerLoop]:
    loop = ServerLoop()
    yield loop
    loop.close()


@pytest.fixture
def net(pki: TestPKI) -> Net:
    return Net(ca_file=pki.ca)


@pytest.fixture
def start_server(server_loop: ServerLoop) -> Iterator[Callable[..., TcpServer]]:
    started: list[TcpServer | DnsServer] = []

    def start(handler: Handler, tls: object = None, host: str = "127.0.0.1", port: int = 0) -> TcpServer:
        srv = server_loop.run(TcpServer(handler, tls, host, port).start())  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield start
    for srv in started:
        server_loop.run(srv.stop())


@pytest.fixture
def http_site(start_server: Callable[..., TcpServer]) -> Site:
    log = HttpRequestLog()
    return Site(start_server(http_app(log)), log, "http")


@pytest.fixture
def tls_site(start_server: Callable[..., TcpServer], pki: TestPKI) -> Callable[[str], Site]:
    def make(kind: str = "valid") -> Site:
        log, sni = HttpRequestLog(), []
        server = start_server(http_app(log), getattr(pki, kind).server_context(sni))
        return Site(server, log, "https", sni)

    return make


@pytest.fixture
def https_site(tls_site: Callable[[str], Site]) -> Site:
    return tls_site("valid")


@pytest.fixture
def reset_server(start_server: Callable[..., TcpServer]) -> TcpServer:
    return start_server(reset_on_data)


@pytest.fixture
def eof_server(start_server: Callable[..., TcpServer]) -> TcpServer:
    return start_server(eof_on_data)


@pytest.fixture
def silent_server(start_server: Callable[..., TcpServer]) -> TcpServer:
    return start_server(silent)


@pytest.fixture
def garbage_server(start_server: Callable[..., TcpServer]) -> TcpServer:
    return start_server(garbage_on_data)


@pytest.fixture
def refused_address() -> str:
    return f"127.0.0.1:{closed_port()}"


@pytest.fixture
def blackhole_address() -> Iterator[str]:
    full = BacklogFull()
    yield full.address
    full.close()


@pytest.fixture
def start_dns(server_loop: ServerLoop) -> Iterator[Callable[..., DnsServer]]:
    started: list[DnsServer] = []

    def start(zone: dict[str, list[str]], inject: dict[str, list[str]] | None = None) -> DnsServer:
        srv = server_loop.run(DnsServer(zone, inject).start())
        started.append(srv)
        return srv

    yield start
    for srv in started:
        server_loop.run(srv.stop())
