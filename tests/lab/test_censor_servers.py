"""Test servers for the censor's wire tests (run inside the server namespace).

A UDP DNS server answering every A query with 203.0.113.80, plain TCP servers
(80, 8080) answering one HTTP request, and a TLS server (443) that sends
``/bytes/N`` bytes; each connection's fate (data, eof, reset) is appended to
an event log so tests can see what the *server* experienced. They run in the lab's
server namespace on addresses of their own, beside the lab's real servers
(which do not report what each connection experienced).
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import sys
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REAL_ANSWER = "203.0.113.80"
REAL_CN = "real server"
_lock = threading.Lock()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the 'real' server (any name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, REAL_CN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("*.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    c, k = directory / "real.pem", directory / "real.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def _event(log: Path, **rec: object) -> None:
    with _lock, log.open("a") as f:
        f.write(json.dumps(rec) + "\n")


def _dns(addr: str) -> None:
    import dns.message
    import dns.rrset

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    while True:
        data, peer = s.recvfrom(4096)
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", REAL_ANSWER))
        s.sendto(r.to_wire(), peer)


def _handle(conn: socket.socket, peer: tuple, port: int, log: Path, tls: ssl.SSLContext | None) -> None:
    got = b""
    try:
        if tls is not None:
            conn = tls.wrap_socket(conn, server_side=True)
        while b"\r\n\r\n" not in got:
            chunk = conn.recv(4096)
            if not chunk:
                _event(log, port=port, peer=peer[0], sport=peer[1], event="eof", data=got.decode("latin-1"))
                return
            got += chunk
        _event(log, port=port, peer=peer[0], sport=peer[1], event="request", data=got.decode("latin-1"))
        path = got.split(b" ")[1].decode()
        body = b"x" * int(path.rsplit("/", 1)[1]) if path.startswith("/bytes/") else b"real content\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    except ConnectionResetError:
        _event(log, port=port, peer=peer[0], sport=peer[1], event="reset", data=got.decode("latin-1"))
    except (OSError, ssl.SSLError) as e:
        _event(log, port=port, peer=peer[0], sport=peer[1], event="error", error=str(e))
    finally:
        conn.close()


def _tcp(addr: str, port: int, log: Path, tls: ssl.SSLContext | None) -> None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        c, peer = s.accept()  # a connection reset before accept() has no getpeername() any more
        threading.Thread(target=_handle, args=(c, peer, port, log, tls), daemon=True).start()


def main() -> None:
    """``python test_censor_servers.py DIR V4 V6``: serve on V4/V6 until killed; writes DIR/events.jsonl, DIR/up."""
    d, v4, v6 = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    log = d / "events.jsonl"
    cert, key = self_signed(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    threads = [threading.Thread(target=_dns, args=(v4,), daemon=True)]
    for addr in (v4, v6):
        threads += [threading.Thread(target=_tcp, args=(addr, p, log, None), daemon=True) for p in (80, 8080)]
        threads.append(threading.Thread(target=_tcp, args=(addr, 443, log, ctx), daemon=True))
    for t in threads:
        t.start()
    (d / "up").write_text("ok")
    threading.Event().wait()


if __name__ == "__main__":
    main()
