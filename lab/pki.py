"""The lab's certificate authority: a CA and leaf certificates with subjectAltNames.

The CA is created per lab (in its state directory) and trusted only by lab
processes, through ``CENSORSCOPE_EXTRA_CA`` and ``SSL_CERT_FILE``; it is never
installed in the system store. Keys are ECDSA P-256 (fast to generate; every
TLS stack in the lab speaks it). A censor doing TLS interception makes its own
CA with ``make_ca`` so that its forged leaves fail verification, as in the wild.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True)
class CA:
    """A certificate authority: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return _key_pem(self.key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
    ])


def make_ca(common_name: str = "censorscope lab CA", org: str = "censorscope lab") -> CA:
    """A new self-signed CA valid from one day ago for ``VALIDITY``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name, org)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(key, cert)


def make_leaf(ca: CA, names: list[str], *, org: str = "censorscope lab site",
              key: ec.EllipticCurvePrivateKey | None = None) -> tuple[bytes, bytes]:
    """A server certificate for ``names`` (DNS names or IP literals) signed by ``ca``.

    Returns ``(cert_pem, key_pem)``; the first name is the common name. Pass ``key``
    to reuse one key for many leaves (generation is the slow part for big labs).
    """
    if not names:
        raise ValueError("a leaf certificate needs at least one name")
    key = key or ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0], org)).issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (to share between leaves with ``make_leaf(key=...)``)."""
    return ec.generate_private_key(ec.SECP256R1())


def write_ca(ca: CA, directory: Path) -> tuple[Path, Path]:
    """Write ``ca.pem`` and ``ca.key`` into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    cert_path.write_bytes(ca.cert_pem())
    key_path.write_bytes(ca.key_pem())
    key_path.chmod(0o600)
    return cert_path, key_path


def load_ca(directory: Path) -> CA:
    """Read a CA written by ``write_ca``."""
    cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("lab CA key is not an EC key")
    return CA(key, cert)
