"""The censor's certificate authority: forged per-SNI certificates for TLS interception.

Like the Kazakh interception of 2019-2020, the censor presents a certificate
for the requested name signed by its own root: the handshake succeeds, and
verification fails unless the client trusts the censor's root. The CA lives in
a directory (``ca.pem``, ``ca.key``) and is reused across restarts and reloads,
so tests can read it; leaves are issued on first use and cached (in memory and
as files, since ``ssl`` loads chains from files).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "censorscope censor CA"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Censor"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class CensorCA:
    """Root certificate + key in ``directory``; ``leaf(sni)`` returns (chain file, key file)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.dir / "ca.pem"
        self.key_path = self.dir / "ca.key"
        self._lock = threading.Lock()
        self._leaves: dict[str, tuple[Path, Path]] = {}
        if self.cert_path.exists() and self.key_path.exists():
            self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.key = key
        else:
            self._create()

    def _create(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = _name(CA_NAME)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        _write_key(self.key_path, self.key)
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, sni: str) -> tuple[Path, Path]:
        """Chain (leaf + CA) and key files for ``sni``, issued on first use."""
        with self._lock:
            hit = self._leaves.get(sni)
            if hit is not None:
                return hit
            key = ec.generate_private_key(ec.SECP256R1())
            now = datetime.datetime.now(datetime.UTC)
            cert = (
                x509.CertificateBuilder().subject_name(_name(sni)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(sni)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256())
            )
            leaves = self.dir / "leaves"
            leaves.mkdir(exist_ok=True)
            stem = hashlib.sha256(sni.encode()).hexdigest()[:16]
            chain_path, key_path = leaves / f"{stem}.pem", leaves / f"{stem}.key"
            chain_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                                   + self.cert.public_bytes(serialization.Encoding.PEM))
            _write_key(key_path, key)
            self._leaves[sni] = (chain_path, key_path)
            return chain_path, key_path
