"""Probe ``tls``: a TLS handshake to IP:PORT with a chosen SNI, and the certificates seen.

Observations: ``connect`` then ``tls_handshake`` (parent: the connect).

The handshake runs *without* certificate verification, so that whatever the
server (or a man in the middle) presents is always recorded: version, cipher,
ALPN and the full chain as sent. Verification is then judged separately
against the system trust store plus ``Net.ca_file`` and stored as
``verification: {ok, failure, hostname_ok, chain_ok, detail}``. A forged
certificate therefore reads as ``failure: null`` (the handshake worked) with
``verification.ok: false`` and ``verification.failure: ssl_unknown_authority``,
which is exactly what interception looks like.

``verification.failure`` follows OpenSSL's order of checks, so it matches what
a verifying client (the ``http`` probe) records for the same server: an
untrusted chain first (``ssl_unknown_authority``; ``ssl_invalid_certificate``
when the chain reaches a trusted root but is broken), then the name
(``ssl_invalid_hostname``), then validity dates (``ssl_invalid_certificate``,
detail ``expired`` / ``not yet valid``). Names are matched against
subjectAltName only, as browsers do (no Common Name fallback).

The target is an IP literal (see ``tcp``); ``--sni`` sets the name sent and
checked. Without it no SNI is sent and the certificate is checked against the
IP address, which is how to see what a server presents to a client that names
nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import os
import ssl
import warnings
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification as xv

from censorscope.probes import dns, tcp
from censorscope.probes.failures import (
    SSL_INVALID_CERTIFICATE,
    SSL_INVALID_HOSTNAME,
    SSL_UNKNOWN_AUTHORITY,
)
from censorscope.probes.net import Net, format_host_port
from censorscope.probes.observation import Observation, Recorder

NAME = "tls"
VERSION = "1"
SUMMARY = "TLS handshake to IP:PORT with a chosen SNI; records version, cipher, ALPN, chain and verification."
TARGET_HELP = "IP:PORT"

DEFAULT_ALPN = ["h2", "http/1.1"]


@dataclass
class Options:
    """Options of the tls probe (each becomes a CLI option)."""

    sni: str | None = field(default=None, metadata={
        "help": "Server name to send as SNI and to check the certificate against (default: send none, check the IP)."})
    alpn: list[str] = field(default_factory=lambda: list(DEFAULT_ALPN), metadata={
        "help": "ALPN protocols to offer, comma-separated (default: h2,http/1.1)."})
    timeout: float = field(default=10.0, metadata={"help": "Seconds for the TCP connect and for the handshake, each."})


# --------------------------------------------------------------------------- certificates


def _utc(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in ext if isinstance(n, x509.DNSName | x509.IPAddress)]


def describe_certificate(der: bytes) -> dict[str, Any]:
    """The stored form of one certificate: names, validity, fingerprint and the DER itself."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:  # a certificate cryptography cannot parse is still evidence
        return {"sha256": _sha256(der), "der_b64": base64.b64encode(der).decode(), "parse_error": str(exc)}
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": _sans(cert),
        "serial": format(cert.serial_number, "x"),
        "not_before": _utc(cert.not_valid_before_utc),
        "not_after": _utc(cert.not_valid_after_utc),
        "sha256": _sha256(der),
        "der_b64": base64.b64encode(der).decode(),
    }


def _sha256(der: bytes) -> str:
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex()


def hostname_matches(cert: x509.Certificate, name: str) -> bool:
    """Does the certificate's subjectAltName cover ``name`` (a host name or IP literal)?

    RFC 6125 rules: case-insensitive, a trailing dot ignored, a wildcard only
    as the whole leftmost label and matching exactly one label.
    """
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in sans.get_values_for_type(x509.IPAddress)
    want = name.rstrip(".").lower()
    for pattern in sans.get_values_for_type(x509.DNSName):
        pattern = pattern.rstrip(".").lower()
        if pattern == want:
            return True
        if pattern.startswith("*.") and "." in want:
            label, rest = want.split(".", 1)
            if label and rest == pattern[2:] and "*" not in rest:
                return True
    return False


def _system_bundle() -> str | None:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class _Anchors:
    store: xv.Store | None
    subjects: frozenset[x509.Name]


@functools.lru_cache(maxsize=8)
def _load_anchors(files: tuple[str, ...], _mtimes: tuple[float, ...]) -> _Anchors:
    anchors = []
    for path in files:
        with open(path, "rb") as fh:
            data = fh.read()
        for block in data.split(b"-----END CERTIFICATE-----"):
            if b"-----BEGIN CERTIFICATE-----" not in block:
                continue
            try:
                with warnings.catch_warnings():  # old roots with odd serials: still anchors
                    warnings.simplefilter("ignore")
                    anchors.append(x509.load_pem_x509_certificate(block + b"-----END CERTIFICATE-----\n"))
            except ValueError:
                continue  # one odd certificate in the system bundle must not disable verification
    return _Anchors(xv.Store(anchors) if anchors else None, frozenset(a.subject for a in anchors))


def trust_anchors(ca_file: str | None) -> _Anchors:
    """The system store plus ``ca_file`` (loaded once, again when a file changes)."""
    files = tuple(p for p in (_system_bundle(), ca_file) if p)
    return _load_anchors(files, tuple(os.path.getmtime(p) for p in files))


def _chain_error(leaf: x509.Certificate, others: list[x509.Certificate], anchors: _Anchors,
                 when: dt.datetime) -> str | None:
    """None if ``leaf`` chains to an anchor at time ``when``, else cryptography's reason."""
    if anchors.store is None:
        return "no trust anchors"
    builder = (
        xv.PolicyBuilder().store(anchors.store).time(when)
        # names are checked separately; the leaf is judged only as a link of the chain
        .extension_policies(ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
                            ee_policy=xv.ExtensionPolicy.permit_all())
    )
    try:
        builder.build_client_verifier().verify(leaf, others)
    except xv.VerificationError as exc:
        return str(exc)
    return None


def verify_chain(ders: list[bytes], name: str, ca_file: str | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Judge a presented chain (leaf first) for ``name``; see the module docstring."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        certs = [x509.load_der_x509_certificate(d) for d in ders]
    except ValueError as exc:
        return {"ok": False, "failure": SSL_INVALID_CERTIFICATE, "hostname_ok": False, "chain_ok": False,
                "detail": f"unparsable certificate: {exc}"}
    if not certs:
        return {"ok": False, "failure": SSL_INVALID_CERTIFICATE, "hostname_ok": False, "chain_ok": False,
                "detail": "no certificate presented"}
    leaf, others = certs[0], certs[1:]
    anchors = trust_anchors(ca_file)
    hostname_ok = hostname_matches(leaf, name)
    dated = [c for c in certs if not c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    error = _chain_error(leaf, others, anchors, now)
    failure: str | None = None
    detail: str | None = None
    chain_ok = error is None
    if error is not None and dated:
        # Is the date the only problem? Re-judge at a moment when every presented
        # certificate was valid; if the chain holds then, it is trusted but expired.
        start = max(c.not_valid_before_utc for c in certs)
        if start <= min(c.not_valid_after_utc for c in certs):
            chain_ok = _chain_error(leaf, others, anchors, start) is None
    if not chain_ok:
        reaches_anchor = any(c.issuer in anchors.subjects or c.subject in anchors.subjects for c in certs)
        failure = SSL_INVALID_CERTIFICATE if reaches_anchor else SSL_UNKNOWN_AUTHORITY
        detail = error
    elif not hostname_ok:
        failure, detail = SSL_INVALID_HOSTNAME, f"certificate does not cover {name!r} (sans: {_sans(leaf)})"
    elif dated:
        failure = SSL_INVALID_CERTIFICATE
        detail = "expired" if any(now > c.not_valid_after_utc for c in dated) else "not yet valid"
    return {"ok": failure is None, "failure": failure, "hostname_ok": hostname_ok, "chain_ok": chain_ok,
            "detail": detail}


# --------------------------------------------------------------------------- handshake


def _presented_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """Every certificate the server sent, leaf first, verification or not.

    ``getpeercert(binary_form=True)`` gives only the leaf. CPython >= 3.10 has
    the full chain on the private ``_sslobj`` (public from 3.13).
    """
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        chain = getter() or []
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


async def handshake(
    net: Net, rec: Recorder, streams: tcp.Streams, *, address: str, server_name: str | None,
    verify_name: str, alpn: list[str], timeout: float, parent_id: int | None,
) -> Observation:
    """Upgrade ``streams`` to TLS in place and record a ``tls_handshake`` observation.

    ``server_name`` is the SNI (None: none sent); ``verify_name`` the name or IP
    the certificate is judged against.
    """
    step = rec.begin("tls_handshake", parent_id, address=address, server_name=server_name,
                     alpn_offered=list(alpn))
    writer = streams[1]
    try:
        await net.start_tls(writer, net.tls_context(verify=False, alpn=alpn or None), server_name,
                            timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every network failure is data
        return step.fail(exc)
    ssl_object = writer.get_extra_info("ssl_object")
    chain = _presented_chain(ssl_object)
    cipher = ssl_object.cipher()
    return step.ok(
        tls_version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        alpn=ssl_object.selected_alpn_protocol(),
        peer_certificates=[describe_certificate(d) for d in chain],
        verification=verify_chain(chain, verify_name, net.ca_file),
    )


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Connect to ``target`` (IP:PORT), handshake, record, close."""
    ip, port = tcp.parse_endpoint(target)
    tcp.check_timeout(options.timeout)
    sni = dns.normalize_name(options.sni) if options.sni else None  # IDNA, as sent on the wire
    rec = Recorder(net.clock)
    conn, streams = await tcp.connect(net, rec, ip, port, timeout=options.timeout)
    if streams is not None:
        await handshake(net, rec, streams, address=format_host_port(ip, port), server_name=sni,
                        verify_name=sni or ip, alpn=options.alpn, timeout=options.timeout,
                        parent_id=conn.id)
        await tcp.close(streams)
    return rec.observations
