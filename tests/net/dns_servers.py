"""Small DNS servers on loopback for the dns tests: UDP (with an injector), TCP, DoT, DoH.

Each server runs in its own thread, so it serves both async tests and the
CLI (which runs its own event loop). Responses are built with dnspython, an
oracle independent of censorscope's hand-written codec. Every server records
what it received, and stops (closing its sockets) when its context exits.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset

# A behaviour maps a parsed query to the replies to send: (delay in s, reply bytes, via) where
# via is "server" (the resolver's own socket) or "injector" (another socket, as an on-path
# injector's packet would come from a different sender in this test).
Reply = tuple[float, bytes, str]
Behaviour = Callable[[dns.message.Message], list[Reply]]


def answer(query: dns.message.Message, *ips: str, ttl: int = 300, rcode: int = 0) -> bytes:
    """A response to ``query`` carrying A/AAAA records for ``ips`` (none for a bare rcode)."""
    resp = dns.message.make_response(query)
    resp.set_rcode(rcode)
    q = query.question[0]
    for ip in ips:
        rtype = "AAAA" if ":" in ip else "A"
        resp.answer.append(dns.rrset.from_text(q.name, ttl, "IN", rtype, ip))
    return resp.to_wire()


def no_data(query: dns.message.Message) -> bytes:
    """NOERROR with an empty answer section and an SOA in authority (RFC 2308 NODATA)."""
    resp = dns.message.make_response(query)
    resp.authority.append(dns.rrset.from_text(
        query.question[0].name, 60, "IN", "SOA", "ns.test. host.test. 1 3600 600 86400 60"))
    return resp.to_wire()


class UDPServer:
    """A UDP DNS server on 127.0.0.1 (or ::1) plus an 'injector' socket with another port."""

    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.injector = socket.socket(family, socket.SOCK_DGRAM)
        self.injector.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.injector_port = self.injector.getsockname()[1]
        self.queries: list[tuple[dns.message.Message, tuple]] = []
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _send(self, via: str, data: bytes, peer: tuple) -> None:
        if self._stop.is_set():
            return
        (self.injector if via == "injector" else self.sock).sendto(data, peer)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            self.queries.append((query, peer))
            for delay, reply, via in self.behaviour(query):
                timer = threading.Timer(delay, self._send, (via, reply, peer))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()

    def __enter__(self) -> UDPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for timer in self._timers:
            timer.cancel()
        self._thread.join(5)
        self.sock.close()
        self.injector.close()


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: StreamServer = self.server  # type: ignore[assignment]
        conn = self.request
        if server.ssl_context is not None:
            try:
                conn = server.ssl_context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
        conn.settimeout(5)
        try:
            head = _recv_exact(conn, 2)
            data = _recv_exact(conn, int.from_bytes(head, "big"))
        except (OSError, ValueError):
            return
        query = dns.message.from_wire(data)
        server.queries.append(query)
        reply = server.behaviour(query)
        if reply is None:
            return  # close without answering
        conn.sendall(len(reply).to_bytes(2, "big") + reply)
        try:
            conn.recv(1)  # wait for the client to close first
        except OSError:
            pass


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ValueError("closed")
        buf += chunk
    return buf


class StreamServer(socketserver.ThreadingTCPServer):
    """DNS over TCP, or over TLS (DoT) when given an ``ssl_context``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Callable[[dns.message.Message], bytes | None],
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _TCPHandler)
        self.behaviour = behaviour
        self.ssl_context = ssl_context
        self.queries: list[dns.message.Message] = []
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> StreamServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


class _DoHHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, wire: bytes) -> None:
        server: DoHServer = self.server  # type: ignore[assignment]
        query = dns.message.from_wire(wire)
        server.requests.append((self.command, query))
        status, ctype, body = server.behaviour(query)
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/dns-query" or self.headers.get("content-type") != "application/dns-message":
            self.send_error(415)
            return
        self._answer(body)

    def do_GET(self) -> None:
        path, _, qs = self.path.partition("?")
        params = dict(p.partition("=")[::2] for p in qs.split("&") if p)
        if path != "/dns-query" or "dns" not in params:
            self.send_error(400)
            return
        b64 = params["dns"]
        self._answer(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))


class DoHServer(ThreadingHTTPServer):
    """HTTPS on 127.0.0.1 answering RFC 8484 POST and GET at /dns-query."""

    daemon_threads = True

    def __init__(self, behaviour: Callable[[dns.message.Message], tuple[int, str, bytes]],
                 ssl_context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _DoHHandler)
        self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.behaviour = behaviour
        self.requests: list[tuple[str, dns.message.Message]] = []
        self.url = f"https://127.0.0.1:{self.server_address[1]}/dns-query"
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> DoHServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


def make_test_pki(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a server certificate for 127.0.0.1; returns (CA PEM path, server context)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "censorscope test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ca_path, ctx


def closed_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` with (very probably) nobody listening."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rcode_of(name: str) -> int:
    """``"NXDOMAIN"`` -> 3 (dnspython's table, independent of ours)."""
    return int(dns.rcode.from_text(name))
