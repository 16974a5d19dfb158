"""Tiny blocking clients for lab tests, meant to run inside a namespace via ``Topology.call_in``.

Each returns what happened as a short string or tuple instead of raising, so a test
can assert the exact outcome (``reset``, ``timeout``, ``ok`` ...).
"""

from __future__ import annotations

import errno
import socket
import ssl
import time

import dns.message


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def outcome(e: BaseException) -> str:
    """A short name for a socket exception."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return "cert_invalid"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, OSError) and e.errno:
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


def dns_responses(server: str, name: str, rdtype: str = "A", hold: float = 1.0) -> list[tuple[float, list[str], str]]:
    """Every response to one query within ``hold`` seconds: (arrival s, addresses, rcode)."""
    q = dns.message.make_query(name, rdtype)
    out = []
    with socket.socket(_family(server), socket.SOCK_DGRAM) as s:
        t0 = time.monotonic()
        s.sendto(q.to_wire(), (server, 53))
        while (left := hold - (time.monotonic() - t0)) > 0:
            s.settimeout(left)
            try:
                data, _ = s.recvfrom(65535)
            except (TimeoutError, ConnectionRefusedError):
                break
            m = dns.message.from_wire(data)
            addrs = sorted(r.to_text() for rrset in m.answer for r in rrset)
            out.append((time.monotonic() - t0, addrs, dns.rcode.to_text(m.rcode())))
    return out


def connect(address: str, port: int, timeout: float = 3.0) -> tuple[str, float]:
    """TCP connect: (outcome, seconds)."""
    t0 = time.monotonic()
    with socket.socket(_family(address), socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((address, port))
            return "ok", time.monotonic() - t0
        except OSError as e:
            return outcome(e), time.monotonic() - t0


def http_get(address: str, host: str, path: str = "/", port: int = 80, timeout: float = 5.0) -> tuple[str, int, bytes]:
    """Plain HTTP GET: (outcome, status, body)."""
    try:
        with socket.socket(_family(address), socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((address, port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError as e:
        return outcome(e), 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return "ok", int(head.split()[1]) if head else 0, body


def https_get(address: str, sni: str, ca_file: str | None, path: str = "/", timeout: float = 5.0,
              max_bytes: int | None = None, max_seconds: float | None = None) -> tuple[str, int, bytes, float]:
    """HTTPS GET verifying against ``ca_file`` only: (outcome, status, body, seconds)."""
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    t0 = time.monotonic()
    data = b""
    try:
        with socket.socket(_family(address), socket.SOCK_STREAM) as raw:
            raw.settimeout(timeout)
            raw.connect((address, 443))
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
                while chunk := s.recv(65536):
                    data += chunk
                    if max_bytes and len(data) >= max_bytes:
                        break
                    if max_seconds and time.monotonic() - t0 >= max_seconds:
                        break
    except OSError as e:
        return outcome(e), 0, b"", time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    return "ok", int(head.split()[1]) if head else 0, body, time.monotonic() - t0
