"""A loopback HTTP(S) server that serves a sized object, optionally paced or cut short (test helper)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_context(names: list[str]) -> ssl.SSLContext:
    """A server TLS context with a throwaway self-signed certificate for ``names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as d:
        cert_path, key_path = Path(d, "cert.pem"), Path(d, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


@dataclass
class ObjectServer:
    """Serves ``size`` bytes at any path; ``rate`` (bytes/s) paces the body; ``cut_after``
    closes the connection after that many body bytes (the announced length stays ``size``);
    ``sni_rates`` overrides ``rate`` for connections with that SNI (a toy SNI throttler)."""

    size: int
    rate: float | None = None
    cut_after: int | None = None
    tls: ssl.SSLContext | None = None
    sni_rates: dict[str, float] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    server: asyncio.base_events.Server | None = None
    _sni: dict[int, str | None] = field(default_factory=dict)

    async def start(self, host: str = "127.0.0.1") -> int:
        if self.tls is not None:
            def on_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
                self._sni[id(sslobj)] = name
            self.tls.sni_callback = on_sni
        self.server = await asyncio.start_server(self._handle, host, 0, ssl=self.tls)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            sslobj = writer.get_extra_info("ssl_object")
            sni = self._sni.pop(id(sslobj), None) if sslobj is not None else None
            self.requests.append({"request_line": lines[0], "headers": lines[1:], "sni": sni})
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {self.size}\r\nConnection: close\r\n\r\n".encode())
            rate = self.sni_rates.get(sni, self.rate) if sni else self.rate
            sent, chunk = 0, 16 * 1024
            limit = self.size if self.cut_after is None else min(self.size, self.cut_after)
            while sent < limit:
                n = min(chunk, limit - sent)
                writer.write(b"x" * n)
                await writer.drain()
                sent += n
                if rate:
                    await asyncio.sleep(n / rate)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
