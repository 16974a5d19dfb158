"""The transparent TLS proxy behind ``tls_interception``.

iptables (nat PREROUTING) redirects the client's TCP connections to the
affected server addresses and port to this proxy in the censor's namespace;
``SO_ORIGINAL_DST`` gives back the address the client dialled. The proxy peeks
(``MSG_PEEK``, nothing consumed) until it holds the whole ClientHello, then:

- SNI listed: completes the handshake itself with a certificate for the SNI
  forged by the censor CA, opens its own TLS connection to the original
  destination (same SNI, no verification: a censor does not care) and relays
  the plaintext both ways;
- otherwise: opens a plain TCP connection to the original destination and
  relays bytes untouched (the peeked hello included), so the client completes
  the handshake with the real server and sees the real certificate.

Upstream connections leave from the censor's own address (no IP_TRANSPARENT),
as a real interception proxy's do. One thread per connection (the lab's
connection rates are small).
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

from .ca import CA_NAME, CensorCA
from .tls_hello import HelloStatus, parse_client_hello

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST has the same value
PEEK_TIMEOUT = 10.0
MAX_HELLO = 16384 + 5

LogFn = Callable[[dict[str, object], str, dict[str, object]], None]


def original_destination(conn: socket.socket) -> tuple[str, int]:
    """The (address, port) the client dialled before the REDIRECT."""
    if conn.family == socket.AF_INET6:
        raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        port = struct.unpack_from("!H", raw, 2)[0]
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), port


def peek_hello(conn: socket.socket, timeout: float = PEEK_TIMEOUT) -> tuple[HelloStatus, str | None]:
    """Peek at the client's first bytes until the ClientHello is complete (or clearly absent)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([conn], [], [], left)[0]:
            return HelloStatus.INCOMPLETE, None
        data = conn.recv(MAX_HELLO, socket.MSG_PEEK)
        if not data:
            return HelloStatus.NOT_TLS, None
        hello = parse_client_hello(data)
        if hello.status is not HelloStatus.INCOMPLETE or len(data) >= MAX_HELLO:
            return hello.status, hello.sni
        time.sleep(0.005)  # more bytes pending: MSG_PEEK returns at once, so wait a little


def _drain(s: socket.socket) -> tuple[list[bytes], bool]:
    """Read everything available now (non-blocking); returns (chunks, reached EOF)."""
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return chunks, False
        if not data:
            return chunks, True
        chunks.append(data)


def _send_all(s: socket.socket, data: bytes, timeout: float) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[s.send(view):]
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            if not select.select([], [s], [], timeout)[1]:
                raise TimeoutError("peer stopped reading") from None


def relay(a: socket.socket, b: socket.socket, idle_timeout: float = 300.0) -> None:
    """Copy bytes both ways until both directions ended (or one TLS side closed), then close both.

    One thread, non-blocking sockets and ``select``: an ``SSLSocket`` must not be
    used from two threads at once, and OpenSSL may hold decrypted or raw bytes
    that ``select`` cannot see, so every wake-up drains each side until it would
    block. A plain half-close is passed on (``shutdown(SHUT_WR)``); TLS has no
    half-close, so the end of either TLS side ends the relay.
    """
    peers = {a: b, b: a}
    readable = [a, b]
    tls = isinstance(a, ssl.SSLSocket) or isinstance(b, ssl.SSLSocket)
    try:
        for s in (a, b):
            s.setblocking(False)
        while readable:
            for s in list(readable):
                chunks, eof = _drain(s)
                for chunk in chunks:
                    _send_all(peers[s], chunk, idle_timeout)
                if eof:
                    if tls:
                        return
                    readable.remove(s)
                    peers[s].shutdown(socket.SHUT_WR)
            if readable and not select.select(readable, [], [], idle_timeout)[0]:
                return
    except (OSError, ssl.SSLError):
        return
    finally:
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


class TransparentTlsProxy:
    """Listen on ``port`` (IPv4 and IPv6); intercept hellos whose SNI ``should_intercept`` names."""

    def __init__(self, port: int, ca: CensorCA, should_intercept: Callable[[str | None], str | None],
                 log: LogFn) -> None:
        self.port = port
        self.ca = ca
        self.should_intercept = should_intercept
        self.log = log
        self.listeners: list[socket.socket] = []
        self._stopping = threading.Event()
        self._contexts: dict[str, ssl.SSLContext] = {}

    def start(self) -> None:
        """Bind the listeners and start accepting."""
        for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, self.port))
            s.listen(128)
            self.listeners.append(s)
            threading.Thread(target=self._accept_loop, args=(s,), daemon=True, name=f"tlsproxy-{family}").start()

    def stop(self) -> None:
        """Stop accepting (connections in flight finish on their own)."""
        self._stopping.set()
        for s in self.listeners:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.listeners = []

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _server_context(self, sni: str) -> ssl.SSLContext:
        ctx = self._contexts.get(sni)
        if ctx is None:
            chain, key = self.ca.leaf(sni)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(chain, key)
            ctx.set_alpn_protocols(["http/1.1"])
            self._contexts[sni] = ctx
        return ctx

    def _serve(self, conn: socket.socket, peer: tuple) -> None:
        upstream = None
        try:
            dst, dport = original_destination(conn)
            flow = {"proto": "tcp", "src": peer[0], "sport": peer[1], "dst": dst, "dport": dport}
            status, sni = peek_hello(conn)
            pattern = self.should_intercept(sni) if status is HelloStatus.SNI else None
            upstream = socket.create_connection((dst, dport), timeout=10)
            upstream.settimeout(None)
            if pattern is None:
                self.log(flow, "tls_pass", {"sni": sni, "hello": status.value})
                relay(conn, upstream)
                return
            assert sni is not None
            conn.settimeout(10)
            client_tls = self._server_context(sni).wrap_socket(conn, server_side=True)
            client_tls.settimeout(None)
            up_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            up_ctx.check_hostname = False
            up_ctx.verify_mode = ssl.CERT_NONE
            up_ctx.set_alpn_protocols(["http/1.1"])
            up_tls = up_ctx.wrap_socket(upstream, server_hostname=sni)
            self.log(flow, "tls_intercept", {"sni": sni, "match": pattern, "issuer": CA_NAME})
            relay(client_tls, up_tls)
        except (OSError, ssl.SSLError, ValueError) as e:
            self.log({"proto": "tcp", "src": peer[0], "sport": peer[1]}, "tls_proxy_error", {"error": str(e)})
            for s in (conn, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
