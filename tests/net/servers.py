"""Loopback servers and a test PKI for probe tests (tests/net).

Everything here listens on 127.0.0.1 on a random port and behaves in one
well-defined way, so a test can assert the *exact* failure string a probe
records. The servers run on an asyncio loop in a background thread
(``ServerLoop``), so a test can drive a probe with ``asyncio.run`` in the main
thread while the servers answer. Fixtures in tests/net/conftest.py wrap them.

Behaviours (the name says what the server does to a client):

- ``http_app``          a tiny HTTP/1.1 site (routes in ``HTTP_ROUTES``), over TCP or TLS
- ``reset_on_data``     accepts, waits for the first client bytes, answers with a RST
                        (SO_LINGER 0 then close): like a censor reacting to a ClientHello
- ``eof_on_data``       accepts, waits for the first client bytes, closes cleanly (FIN)
- ``silent``            accepts and never answers (the client's read times out)
- ``garbage_on_data``   answers the first client bytes with bytes that are not TLS
- ``BacklogFull``       a listening socket whose accept queue is full, so the kernel
                        drops new SYNs and ``connect()`` itself times out
- ``DnsServer``         UDP DNS for a small zone, optionally with an "injector" that
                        sends a forged answer before the real one (same query id)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gzip
import ipaddress
import select
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: the name the test site is served under (RFC 6761 reserves .test)
TEST_NAME = "site.censorscope.test"
#: the name the wrong-name certificate is issued for
OTHER_NAME = "other.censorscope.test"
#: a name no test DNS zone contains
MISSING_NAME = "missing.censorscope.test"
#: the title of the test site's front page
TEST_TITLE = "censorscope test page"

# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class CertFiles:
    """A server certificate: ``cert`` is a PEM chain (leaf first), ``key`` its key."""

    cert: str
    key: str
    leaf_sha256: str

    def server_context(self, sni_log: list[str | None] | None = None) -> ssl.SSLContext:
        """A server-side TLS context presenting this chain (TLS 1.2 and 1.3, ALPN http/1.1).

        With ``sni_log``, the SNI of every ClientHello (None: none sent) is appended to it.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])
        if sni_log is not None:
            ctx.sni_callback = lambda _obj, name, _ctx: sni_log.append(name)  # type: ignore[assignment,misc]
        return ctx


@dataclass(frozen=True)
class TestPKI:
    """A root CA (``ca``, the file clients trust), an intermediate, and leaves.

    ``valid``: TEST_NAME and 127.0.0.1, issued by the intermediate, chain served.
    ``expired``: same names, validity ended yesterday.
    ``wrong_name``: valid, but for OTHER_NAME only.
    ``untrusted``: TEST_NAME issued by a CA nobody trusts (what an interceptor shows).
    """

    __test__ = False  # not a pytest test class, despite the name

    ca: str
    valid: CertFiles
    expired: CertFiles
    wrong_name: CertFiles
    untrusted: CertFiles


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "censorscope tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, Any] | None,
             path_len: int | None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signer = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _leaf(names: list[str], issuer: tuple[x509.Certificate, Any], *, expired: bool = False
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=60), now - dt.timedelta(days=1)) if expired else (
        now - dt.timedelta(days=1), now + dt.timedelta(days=90))
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(issuer[0].subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer[1], hashes.SHA256())
    )
    return cert, key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(directory: Path, stem: str, chain: list[x509.Certificate], key: Any) -> CertFiles:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(b"".join(_pem(c) for c in chain))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return CertFiles(str(cert_path), str(key_path), chain[0].fingerprint(hashes.SHA256()).hex())


def make_pki(directory: Path) -> TestPKI:
    """Generate the test PKI into ``directory`` (EC P-256 keys: fast)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca_cert("censorscope test root CA", root_key, None, path_len=1)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = _ca_cert("censorscope test intermediate CA", mid_key, (root, root_key), path_len=0)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _ca_cert("censorscope untrusted interception CA", rogue_key, None, path_len=0)
    (directory / "ca.pem").write_bytes(_pem(root))
    valid, valid_key = _leaf([TEST_NAME, "127.0.0.1"], (mid, mid_key))
    expired, expired_key = _leaf([TEST_NAME, "127.0.0.1"], (mid, mid_key), expired=True)
    wrong, wrong_key = _leaf([OTHER_NAME], (mid, mid_key))
    forged, forged_key = _leaf([TEST_NAME, "127.0.0.1"], (rogue, rogue_key))
    return TestPKI(
        ca=str(directory / "ca.pem"),
        valid=_write(directory, "valid", [valid, mid], valid_key),
        expired=_write(directory, "expired", [expired, mid], expired_key),
        wrong_name=_write(directory, "wrong_name", [wrong, mid], wrong_key),
        untrusted=_write(directory, "untrusted", [forged, rogue], forged_key),
    )


# --------------------------------------------------------------------------- loop thread


class ServerLoop:
    """An asyncio loop running in a daemon thread; servers live on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-servers", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run ``coro`` on the server loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class TcpServer:
    """``asyncio.start_server`` on 127.0.0.1:0 running ``handler`` per connection.

    Tracks its connections so ``stop`` closes them all (asyncio's
    ``Server.close`` leaves accepted connections open).
    """

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.handler = handler
        self.tls = tls
        self.host = host
        self.port = port
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpServer:
        """Listen; ``port`` is set afterwards."""
        self._server = await asyncio.start_server(self._run, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to do
        finally:
            self._writers.discard(writer)
            writer.close()

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{self.host}:{self.port}"


def send_rst(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a TCP RST instead of a FIN (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def reset_on_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Wait for the client's first bytes, then reset the connection."""
    await reader.read(1)
    send_rst(writer)


async def eof_on_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Wait for the client's first bytes, then close cleanly (FIN)."""
    await reader.read(1)
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and discard everything; never answer."""
    while await reader.read(65536):
        pass


#: what ``garbage_on_data`` sends: an SSH banner, which no TLS client can parse
GARBAGE = b"SSH-2.0-not-a-tls-server\r\n" + bytes(range(256))


async def garbage_on_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the first client bytes with non-TLS bytes, then keep the connection open."""
    await reader.read(1)
    writer.write(GARBAGE)
    await writer.drain()
    await silent(reader, writer)


# --------------------------------------------------------------------------- HTTP


def page_body() -> bytes:
    """The body of ``/``: a small HTML page with ``TEST_TITLE``."""
    filler = "".join(f"<p>line {i}</p>\n" for i in range(400))
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{TEST_TITLE}</title></head>\n"
            f"<body><h1>Привет</h1>\n{filler}</body></html>\n").encode()


#: route -> description; the handler below implements them
HTTP_ROUTES = {
    "/": "200, the test page (text/html, utf-8, ~7 KiB, with a <title>)",
    "/gzip": "200, the test page gzip-encoded",
    "/bomb": "200, 64 MiB of zeros gzip-encoded (~64 KiB on the wire): a decompression bomb",
    "/redirect": "302 to / (relative Location)",
    "/elsewhere": "302 to OTHER_NAME, same scheme and port (a redirect to another host)",
    "/nowhere": "302 to MISSING_NAME, same scheme and port (a host no test zone has)",
    "/loop/a": "302 to /loop/b, which redirects back: an endless redirect loop",
    "/endless": "200 with a body that never ends (no Content-Length, 16 KiB writes)",
    "/trickle": "200, Content-Length 1 MB, then 10 bytes every 0.1 s: never finishes in time",
    "/missing": "404 (any unknown path)",
}


#: decoded size of ``/bomb``
BOMB_SIZE = 64 * 1024 * 1024


@functools.cache
def bomb_body() -> bytes:
    """``/bomb`` as sent: BOMB_SIZE zeros, gzip-compressed (computed once)."""
    return gzip.compress(bytes(BOMB_SIZE), 9, mtime=0)


@dataclass
class HttpRequestLog:
    """What the HTTP app saw: one (method, target, headers) per request."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def http_app(log: HttpRequestLog) -> Handler:
    """An HTTP/1.1 handler implementing ``HTTP_ROUTES``; one request per connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        log.requests.append((method, target, headers))

        def start(status: str, extra: list[tuple[str, str]]) -> None:
            hdr = [f"HTTP/1.1 {status}", "Server: censorscope-test", "Connection: close"]
            hdr += [f"{k}: {v}" for k, v in extra]
            writer.write(("\r\n".join(hdr) + "\r\n\r\n").encode())

        if target == "/":
            body = page_body()
            start("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
            writer.write(body)
        elif target in ("/gzip", "/bomb"):
            body = gzip.compress(page_body(), 6, mtime=0) if target == "/gzip" else bomb_body()
            start("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", "gzip"),
                             ("Content-Length", str(len(body)))])
            writer.write(body)
        elif target in ("/elsewhere", "/nowhere"):
            port = headers.get("host", "").rpartition(":")[2]
            name = OTHER_NAME if target == "/elsewhere" else MISSING_NAME
            scheme = "https" if writer.get_extra_info("ssl_object") else "http"
            start("302 Found", [("Location", f"{scheme}://{name}:{port}/"), ("Content-Length", "0")])
        elif target in ("/redirect", "/loop/a", "/loop/b"):
            location = {"/redirect": "/", "/loop/a": "/loop/b", "/loop/b": "/loop/a"}[target]
            start("302 Found", [("Location", location), ("Content-Length", "0")])
        elif target == "/endless":
            start("200 OK", [("Content-Type", "application/octet-stream")])
            chunk = b"x" * 16384
            while True:
                writer.write(chunk)
                await writer.drain()
        elif target == "/trickle":
            start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000000")])
            while True:
                writer.write(b"0123456789")
                await writer.drain()
                await asyncio.sleep(0.1)
        else:
            body = b"not found\n"
            start("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            writer.write(body)
        await writer.drain()

    return handle


# --------------------------------------------------------------------------- connect timeout


class BacklogFull:
    """A listening socket whose accept queue is full, so connect() to it times out.

    Why this works: with ``listen(0)`` Linux queues one not-yet-accepted
    connection; once the accept queue is full the kernel *drops* further SYNs
    (it does not refuse them), exactly like a black-holing firewall, and the
    client keeps retransmitting its SYN until its own timeout. We fill the
    queue with filler connections until one stays pending, never accept, and
    close everything in ``close()``. (The alternative, a server that accepts and
    stays silent, tests a *read* timeout, not a connect timeout.)
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.host, self.port = self.sock.getsockname()
        self._fillers: list[socket.socket] = []
        for _ in range(16):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            self._fillers.append(c)
            c.connect_ex((self.host, self.port))
            _, writable, _ = select.select([], [c], [], 0.5)
            if not writable:
                return  # this SYN was dropped: the queue is full
        self.close()
        raise RuntimeError("could not fill the accept queue")

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        """Close the fillers and the listener."""
        for c in self._fillers:
            c.close()
        self.sock.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connect is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------- DNS


class DnsServer(asyncio.DatagramProtocol):
    """A UDP DNS server on 127.0.0.1 for a tiny zone.

    ``zone`` maps a name (no trailing dot) to its addresses; A queries get the
    IPv4 ones, AAAA the IPv6 ones (NOERROR with no answer when there are none);
    other names get NXDOMAIN. ``inject`` maps a name to forged IPv4 addresses
    sent *first*, in their own response with the same id, like an on-path
    injector; the real response follows ``real_delay`` seconds later.
    """

    def __init__(self, zone: dict[str, list[str]], inject: dict[str, list[str]] | None = None,
                 real_delay: float = 0.05) -> None:
        self.zone = {k.rstrip(".").lower(): v for k, v in zone.items()}
        self.inject = {k.rstrip(".").lower(): v for k, v in (inject or {}).items()}
        self.real_delay = real_delay
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> DnsServer:
        """Bind 127.0.0.1:0; ``port`` is set afterwards."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def stop(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def _answer(self, query: dns.message.Message, addresses: list[str] | None) -> bytes:
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.RA
        q = query.question[0]
        if addresses is None:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            return resp.to_wire()
        want = 4 if q.rdtype == dns.rdatatype.A else 6 if q.rdtype == dns.rdatatype.AAAA else 0
        picked = [a for a in addresses if ipaddress.ip_address(a).version == want]
        if picked:
            resp.answer.append(dns.rrset.from_text_list(q.name, 60, dns.rdataclass.IN, q.rdtype, picked))
        return resp.to_wire()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # noqa: D102
        query = dns.message.from_wire(data)
        q = query.question[0]
        name = q.name.to_text().rstrip(".").lower()
        self.queries.append((name, dns.rdatatype.to_text(q.rdtype)))
        assert self.transport is not None
        delay = 0.0
        if name in self.inject and q.rdtype == dns.rdatatype.A:
            self.transport.sendto(self._answer(query, self.inject[name]), addr)
            delay = self.real_delay
        real = self._answer(query, self.zone.get(name))
        asyncio.get_running_loop().call_later(delay, self._send, real, addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


@dataclass
class Site:
    """A running ``http_app``: the server, what it saw, and URL helpers."""

    server: TcpServer
    log: HttpRequestLog
    scheme: str  # "http" or "https"
    sni: list[str | None] = field(default_factory=list)  # SNI of each ClientHello (https only)

    def url(self, path: str = "/", host: str | None = None) -> str:
        """``scheme://HOST:PORT/path``; HOST defaults to 127.0.0.1 (http) or TEST_NAME (https)."""
        host = host or (TEST_NAME if self.scheme == "https" else self.server.host)
        return f"{self.scheme}://{host}:{self.server.port}{path}"
