"""classify() is complete: every failure a probe can meet maps to its own string.

Exceptions are REAL wherever loopback can produce them (a closed port, a server
that resets with SO_LINGER 0, one that closes, one that stays silent, a full
accept queue, TLS servers with a test CA and expired / wrong-name / untrusted
leaves, a server that answers a ClientHello with garbage, a DNS server
answering each rcode), raised by the very library calls the probes use
(asyncio, ssl, httpx, dnspython) so the wrapping is the real one. Only what
loopback cannot produce without addressing a foreign host (unreachable
networks, getaddrinfo errors) is constructed, and then pushed through the
real httpx/httpcore wrapping where probes would meet it that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rcode
import httpx
import pytest

from censorscope.probes import failures
from censorscope.probes.failures import classify, classify_rcode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "net"))
from servers import (  # noqa: E402 - the shared loopback servers live in tests/net
    BacklogFull,
    HttpRequestLog,
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

NAME = "site.censorscope.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("failures-pki"))


async def caught(awaitable: Awaitable[Any]) -> BaseException:
    """The exception ``awaitable`` raises (failing the test if it raises none)."""
    try:
        await awaitable
    except BaseException as exc:  # noqa: BLE001 - we want exactly what was raised
        return exc
    raise AssertionError("expected an exception")


async def serving(handler: Any, tls: ssl.SSLContext | None = None) -> TcpServer:
    return await TcpServer(handler, tls).start()


def client_ctx(pki: TestPKI, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    if max_version:
        ctx.maximum_version = max_version
    return ctx


# --- producers of real exceptions (each returns the exception a probe would see) -----------


async def refused_asyncio(pki: TestPKI) -> BaseException:
    return await caught(asyncio.open_connection("127.0.0.1", closed_port()))


async def refused_blocking(pki: TestPKI) -> BaseException:
    return await caught(asyncio.to_thread(socket.create_connection, ("127.0.0.1", closed_port()), 2))


async def reset_on_read(pki: TestPKI) -> BaseException:
    srv = await serving(reset_on_data)
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    exc = await caught(asyncio.wait_for(reader.read(10), 5))
    writer.close()
    await srv.stop()
    return exc


async def timeout_on_read(pki: TestPKI) -> BaseException:
    srv = await serving(silent)
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    exc = await caught(asyncio.wait_for(reader.read(10), 0.05))
    writer.close()
    await srv.stop()
    return exc


async def timeout_blocking_socket(pki: TestPKI) -> BaseException:
    srv = await serving(silent)

    def read() -> None:
        with socket.create_connection((srv.host, srv.port), 2) as s:
            s.settimeout(0.05)
            s.recv(10)

    exc = await caught(asyncio.to_thread(read))
    await srv.stop()
    return exc


async def timeout_on_connect(pki: TestPKI) -> BaseException:
    full = BacklogFull()
    try:
        return await caught(asyncio.wait_for(asyncio.open_connection(full.host, full.port), 0.3))
    finally:
        full.close()


async def eof_on_readexactly(pki: TestPKI) -> BaseException:
    srv = await serving(eof_on_data)
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    writer.write(b"hello")
    exc = await caught(asyncio.wait_for(reader.readexactly(10), 5))
    writer.close()
    await srv.stop()
    return exc


async def _start_tls(pki: TestPKI, handler: Any, tls: ssl.SSLContext | None,
                     ctx: ssl.SSLContext | None = None) -> BaseException:
    srv = await serving(handler, tls)
    _, writer = await asyncio.open_connection(srv.host, srv.port)
    exc = await caught(asyncio.wait_for(writer.start_tls(ctx or client_ctx(pki), server_hostname=NAME), 5))
    writer.transport.abort()
    await srv.stop()
    return exc


async def eof_during_tls_handshake(pki: TestPKI) -> BaseException:
    return await _start_tls(pki, eof_on_data, None)


async def reset_during_tls_handshake(pki: TestPKI) -> BaseException:
    return await _start_tls(pki, reset_on_data, None)


async def tls_garbage(pki: TestPKI) -> BaseException:
    return await _start_tls(pki, garbage_on_data, None)


async def tls_protocol_version_alert(pki: TestPKI) -> BaseException:
    # A blocking server: OpenSSL writes its alert before the handshake raises (asyncio's
    # server side may drop the connection before the alert is flushed: an EOF, not an alert).
    server_ctx = pki.valid.server_context()
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(ssl.SSLError, OSError):
            server_ctx.wrap_socket(conn, server_side=True)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    _, writer = await asyncio.open_connection(*listener.getsockname())
    ctx = client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2)
    exc = await caught(asyncio.wait_for(writer.start_tls(ctx, server_hostname=NAME), 5))
    writer.transport.abort()
    await asyncio.to_thread(thread.join, 5)
    listener.close()
    assert "PROTOCOL_VERSION" in str(exc).upper(), exc  # a real alert arrived
    return exc


async def _httpx_get(pki: TestPKI, handler: Any, tls: ssl.SSLContext | None = None, *, timeout: float = 5,
                     follow: bool = False, path: str = "/") -> BaseException:
    srv = await serving(handler, tls)
    scheme = "https" if tls else "http"
    transport = httpx.AsyncHTTPTransport(verify=client_ctx(pki), retries=0)
    async with httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=follow,
                                 max_redirects=2) as client:
        exc = await caught(client.get(f"{scheme}://127.0.0.1:{srv.port}{path}",
                                      extensions={"sni_hostname": NAME}))
    await srv.stop()
    return exc


def _bad_certificate(client: Any, cert: str) -> Any:
    """A case: ``client`` (``_start_tls`` or ``_httpx_get``) against a server showing the test PKI's ``cert``."""
    async def produce(pki: TestPKI) -> BaseException:
        return await client(pki, silent, getattr(pki, cert).server_context())

    produce.__name__ = f"{'tls' if client is _start_tls else 'httpx'}_{cert}"
    return produce


async def httpx_refused(pki: TestPKI) -> BaseException:
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(retries=0)) as client:
        return await caught(client.get(f"http://127.0.0.1:{closed_port()}/"))


async def httpx_reset(pki: TestPKI) -> BaseException:
    return await _httpx_get(pki, reset_on_data)


async def httpx_eof(pki: TestPKI) -> BaseException:
    return await _httpx_get(pki, eof_on_data)


async def httpx_read_timeout(pki: TestPKI) -> BaseException:
    return await _httpx_get(pki, silent, timeout=0.1)


async def httpx_connect_timeout(pki: TestPKI) -> BaseException:
    full = BacklogFull()
    try:
        async with httpx.AsyncClient(timeout=0.3, transport=httpx.AsyncHTTPTransport(retries=0)) as client:
            return await caught(client.get(f"http://{full.address}/"))
    finally:
        full.close()


async def httpx_too_many_redirects(pki: TestPKI) -> BaseException:
    return await _httpx_get(pki, http_app(HttpRequestLog()), follow=True, path="/loop/a")


async def _malformed_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nthis is no header line\r\n\r\n")
    await writer.drain()
    await silent(reader, writer)


async def httpx_malformed(pki: TestPKI) -> BaseException:
    return await _httpx_get(pki, _malformed_response)


class _RcodeServer(asyncio.DatagramProtocol):
    """Answers ``<rcode>.test`` with that rcode (``noerror.test``: NOERROR, no answer); ``mute.test``: nothing."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        label = query.question[0].name.labels[0].decode()
        if label == "mute":
            return
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.from_text(label))
        self.transport.sendto(response.to_wire(), addr)


async def _dnspython_resolve(label: str) -> BaseException:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        _RcodeServer, local_addr=("127.0.0.1", 0))
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = transport.get_extra_info("sockname")[1]
    resolver.lifetime = 0.3
    try:
        return await caught(resolver.resolve(f"{label}.test", "A"))
    finally:
        transport.close()


async def dns_nxdomain(pki: TestPKI) -> BaseException:
    return await _dnspython_resolve("nxdomain")


async def dns_servfail(pki: TestPKI) -> BaseException:
    return await _dnspython_resolve("servfail")


async def dns_refused(pki: TestPKI) -> BaseException:
    return await _dnspython_resolve("refused")


async def dns_no_answer(pki: TestPKI) -> BaseException:
    return await _dnspython_resolve("noerror")


async def dns_timeout(pki: TestPKI) -> BaseException:
    return await _dnspython_resolve("mute")


async def httpx_unreachable(pki: TestPKI, code: int = errno.EHOSTUNREACH) -> BaseException:
    """What httpx raises when the kernel says EHOSTUNREACH: the real httpcore/httpx wrapping,
    with only the innermost OSError constructed (provoking it would mean a foreign address)."""
    import anyio

    real = anyio.connect_tcp

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, "No route to host")

    anyio.connect_tcp = unreachable  # type: ignore[assignment]
    try:
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(retries=0)) as client:
            return await caught(client.get("http://127.0.0.1:9/"))
    finally:
        anyio.connect_tcp = real


async def httpx_network_unreachable(pki: TestPKI) -> BaseException:
    return await httpx_unreachable(pki, errno.ENETUNREACH)


REAL: list[tuple[Callable[[TestPKI], Awaitable[BaseException]], str]] = [
    (refused_asyncio, "connection_refused"),
    (refused_blocking, "connection_refused"),
    (httpx_refused, "connection_refused"),
    (reset_on_read, "connection_reset"),
    (reset_during_tls_handshake, "connection_reset"),
    (httpx_reset, "connection_reset"),
    (timeout_on_read, "generic_timeout_error"),
    (timeout_blocking_socket, "generic_timeout_error"),
    (timeout_on_connect, "generic_timeout_error"),
    (httpx_read_timeout, "generic_timeout_error"),
    (httpx_connect_timeout, "generic_timeout_error"),
    (dns_timeout, "generic_timeout_error"),
    (eof_on_readexactly, "eof_error"),
    (eof_during_tls_handshake, "eof_error"),
    (httpx_eof, "eof_error"),
    (httpx_unreachable, "host_unreachable"),
    (httpx_network_unreachable, "network_unreachable"),
    (dns_nxdomain, "dns_nxdomain_error"),
    (dns_servfail, "dns_servfail_error"),
    (dns_refused, "dns_refused_error"),
    (dns_no_answer, "dns_no_answer"),
    *[(_bad_certificate(client, cert), failure)
      for cert, failure in (("wrong_name", "ssl_invalid_hostname"), ("untrusted", "ssl_unknown_authority"),
                            ("expired", "ssl_invalid_certificate"))
      for client in (_start_tls, _httpx_get)],
    (tls_garbage, "ssl_failed_handshake"),
    (tls_protocol_version_alert, "ssl_failed_handshake"),
    (httpx_too_many_redirects, "http_too_many_redirects"),
    (httpx_malformed, "http_protocol_error"),
]


@pytest.mark.net
@pytest.mark.parametrize("produce,failure", REAL, ids=[p.__name__ for p, _ in REAL])
def test_real_exceptions(pki, produce, failure):
    exc = asyncio.run(produce(pki))
    assert classify(exc) == failure, repr(exc)


# --- what loopback cannot produce: constructed the way the kernel / libc report it ----------

CONSTRUCTED: list[tuple[BaseException, str]] = [
    (OSError(errno.EHOSTUNREACH, "No route to host"), "host_unreachable"),
    (OSError(errno.EHOSTDOWN, "Host is down"), "host_unreachable"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "network_unreachable"),
    (OSError(errno.ENETDOWN, "Network is down"), "network_unreachable"),
    (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), "generic_timeout_error"),
    (ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort"), "connection_aborted"),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), "broken_pipe"),
    (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "address_not_available"),
    (PermissionError(errno.EPERM, "Operation not permitted"), "permission_denied"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns_nxdomain_error"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "dns_temporary_failure"),
    (socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure in name resolution"), "dns_non_recoverable_failure"),
    (dns.exception.Timeout(), "generic_timeout_error"),
    (dns.exception.FormError("bad message"), "dns_server_misbehaving"),
    (OSError(errno.EADDRINUSE, "Address already in use"), "address_in_use"),
    (OSError(errno.EPROTONOSUPPORT, "Protocol not supported"), "protocol_not_supported"),
    (OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol"), "address_family_not_supported"),
    (ValueError("something odd"), "unknown_failure: something odd"),
    (RuntimeError(), "unknown_failure: RuntimeError"),
]
if hasattr(socket, "EAI_NODATA"):
    CONSTRUCTED.append((socket.gaierror(socket.EAI_NODATA, "No address associated with hostname"), "dns_no_answer"))


@pytest.mark.parametrize("exc,failure", CONSTRUCTED, ids=[f for _, f in CONSTRUCTED])
def test_constructed_exceptions(exc, failure):
    assert classify(exc) == failure


def test_errno_wins_over_the_wrapper_type():
    # httpx.ReadTimeout wrapping a reset: the kernel's evidence (ECONNRESET) is the more specific.
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        except ConnectionResetError as inner:
            raise httpx.ReadTimeout("timed out") from inner
    except httpx.ReadTimeout as outer:
        assert classify(outer) == "connection_reset"


def test_ssl_error_errno_is_not_a_kernel_errno():
    # SSLError.errno is OpenSSL's (1 == EPERM numerically): it must not read as permission_denied.
    err = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert classify(err) == "ssl_failed_handshake"


@pytest.mark.parametrize("rcode,failure", [
    (0, None), (2, "dns_servfail_error"), (3, "dns_nxdomain_error"), (5, "dns_refused_error"),
    (1, "dns_server_misbehaving"), (4, "dns_server_misbehaving"),
])
def test_classify_rcode(rcode, failure):
    assert classify_rcode(rcode) == failure


#: every failure the website probes can meet (the task's list); each must be produced above
REQUIRED = {
    "connection_refused", "connection_reset", "generic_timeout_error", "host_unreachable",
    "network_unreachable", "eof_error", "dns_nxdomain_error", "dns_servfail_error", "dns_refused_error",
    "dns_no_answer", "ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate",
    "ssl_failed_handshake", "http_too_many_redirects", "http_protocol_error",
}


def test_every_required_failure_has_a_real_or_constructed_case():
    produced = {f for _, f in REAL} | {f for _, f in CONSTRUCTED}
    assert REQUIRED <= produced, REQUIRED - produced
    assert REQUIRED <= failures.KNOWN
    # and each vocabulary string a probe can meet is reachable from some exception
    unreached = failures.KNOWN - produced
    assert not unreached, unreached
