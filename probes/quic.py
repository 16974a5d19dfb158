"""``quic``: a QUIC handshake with SNI (aioquic), to tell QUIC-specific blocking from TCP/TLS blocking.

Runs the QUIC handshake to ``IP:PORT`` with the given SNI and ALPN, accepting
any certificate so that the chain is always recorded, then verifies the chain
separately (``cryptography``'s X.509 verifier against the system store plus
``Net.ca_file``), like the ``tls`` probe: a forged certificate shows as a
successful handshake with ``verification.ok: false``. By default the probe
then makes the same handshake over TCP (``connect`` + ``tls_handshake`` with the
same SNI, ``compare_with: "quic_handshake"``): QUIC failing while TLS over TCP
succeeds points at QUIC/UDP-specific interference.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import warnings
from dataclasses import dataclass, field

from censorscope.probes.failures import (
    GENERIC_TIMEOUT,
    SSL_FAILED_HANDSHAKE,
    SSL_INVALID_CERTIFICATE,
    SSL_INVALID_HOSTNAME,
    SSL_UNKNOWN_AUTHORITY,
)
from censorscope.probes.net import Net
from censorscope.probes.observation import Observation, Recorder, Step
from censorscope.probes.vpn_common import (
    CLOSE_WAIT,
    Target,
    close_writer,
    config_or_empty,
    config_param,
    load_config,
    new_recorder,
    parse_target,
    scheme_target,
    tcp_connect,
)

NAME = "quic"
VERSION = "0.1.0"
SUMMARY = "QUIC handshake with SNI (aioquic); version, ALPN, certificate verified separately."
TARGET_HELP = "quic://IP[:PORT]?sni=NAME"


@dataclass
class Options:
    """Options of the quic probe."""

    sni: str | None = field(default=None, metadata={"help": "Server name to send (or ?sni= in the target)."})
    alpn: list[str] = field(default_factory=lambda: ["h3"], metadata={"help": "ALPN protocols offered (comma-separated)."})
    timeout: float = field(default=10.0, metadata={"help": "Seconds for the handshake."})
    tcp_tls: bool = field(default=True, metadata={"help": "Also a TLS-over-TCP handshake to the same address and SNI."})
    config: str | None = field(default=None, metadata={"help": "TOML file: sni, alpn, timeout."})


def cert_summary(cert: object) -> dict:
    """Subject, issuer, SANs, SHA-256 and validity of an x509.Certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    assert isinstance(cert, x509.Certificate)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(), "sans": sans,
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat(),
        "der_len": len(cert.public_bytes(Encoding.DER)),
    }


def verify_chain(chain: list, server_name: str | None, ca_file: str | None) -> dict:
    """Verify a peer chain (leaf first) against the system store + ``ca_file``."""
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    roots = []
    paths = [ssl.get_default_verify_paths().cafile, ca_file]
    for path in [p for p in paths if p]:
        try:
            with open(path, "rb") as fh, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a few system roots have non-positive serials
                roots += x509.load_pem_x509_certificates(fh.read())
        except (OSError, ValueError):
            continue
    if not chain:
        return {"ok": False, "failure": SSL_INVALID_CERTIFICATE, "hostname_ok": None, "detail": "no certificate"}
    if not roots:
        return {"ok": False, "failure": SSL_UNKNOWN_AUTHORITY, "hostname_ok": None, "detail": "no trust anchors"}
    try:
        subject: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(server_name or ""))
    except ValueError:
        subject = x509.DNSName(server_name or "")
    builder = PolicyBuilder().store(Store(roots)).time(datetime.datetime.now(datetime.UTC))
    try:
        builder.build_server_verifier(subject).verify(chain[0], chain[1:])
        return {"ok": True, "failure": None, "hostname_ok": True, "detail": None}
    except VerificationError as exc:
        detail = str(exc)
    # tell hostname mismatch apart: does the chain verify for the leaf's own first SAN?
    hostname_ok = None
    try:
        san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        first = next(iter(san))
        builder.build_server_verifier(first).verify(chain[0], chain[1:])
        hostname_ok = False
    except (VerificationError, StopIteration, x509.ExtensionNotFound, ValueError):
        pass
    if hostname_ok is False:
        failure = SSL_INVALID_HOSTNAME
    elif "issuer" in detail or "candidates exhausted" in detail or "root" in detail:
        failure = SSL_UNKNOWN_AUTHORITY
    else:
        failure = SSL_INVALID_CERTIFICATE
    return {"ok": False, "failure": failure, "hostname_ok": hostname_ok, "detail": detail}


#: seconds beyond ``timeout`` the QUIC handshake may take before its backstop (closing included)
_QUIC_BACKSTOP = 5.0
#: seconds allowed for one certificate verification (it loads the system store: CPU, slow on a busy host)
VERIFY_ALLOWANCE = 2.0


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog.

    The QUIC handshake runs under a backstop of ``timeout`` + 5 s, then its
    certificate verification; with ``tcp_tls``, connect and TLS, ``timeout``
    each, the verification and the close.
    """
    cfg = config_or_empty(target, options.config)
    timeout = float(cfg.get("timeout", options.timeout))
    total = timeout + _QUIC_BACKSTOP + VERIFY_ALLOWANCE
    if bool(cfg.get("tcp_tls", options.tcp_tls)):
        total += 2 * timeout + VERIFY_ALLOWANCE + CLOSE_WAIT
    return total


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """QUIC handshake (``quic_handshake``: the QUIC connection is its own connect), then TLS over TCP."""
    from aioquic.quic.configuration import QuicConfiguration

    t = parse_target(target, "quic", 443)
    cfg = load_config(config_param(target) or options.config)
    sni = t.params.get("sni") or cfg.get("sni") or options.sni
    alpn = list(cfg.get("alpn", options.alpn))
    timeout = float(cfg.get("timeout", options.timeout))
    rec = new_recorder(net)
    # aioquic's idle timer outlives our deadline so that silence is always our generic_timeout_error
    conf = QuicConfiguration(is_client=True, alpn_protocols=alpn, verify_mode=ssl.CERT_NONE, server_name=sni,
                             idle_timeout=timeout + 5)
    step = rec.begin("quic_handshake", None, address=t.address, ip=t.host, port=t.port, proto="udp",
                     server_name=sni, alpn_offered=alpn)
    await _quic(rec, net, t, conf, step, sni, timeout)
    if bool(cfg.get("tcp_tls", options.tcp_tls)):
        await _tcp_tls(rec, net, t, sni, alpn, timeout)
    return rec.observations


async def _quic(rec: Recorder, net: Net, t: Target, conf: object, step: Step, sni: str | None,
                timeout: float) -> None:
    """The QUIC handshake itself; finishes ``step`` whatever happens."""
    from aioquic.asyncio.client import connect

    try:
        async with asyncio.timeout(timeout + _QUIC_BACKSTOP):  # a backstop; the handshake has its own deadline below
            async with connect(t.host, t.port, configuration=conf, wait_connected=False) as client:
                quic = client._quic  # aioquic keeps the negotiated state on the connection object
                client.transmit()  # wait_connected=False leaves the first flight to us
                waiter = asyncio.ensure_future(client.wait_connected())
                done, _ = await asyncio.wait({waiter}, timeout=timeout)
                if not done:
                    step.fail(GENERIC_TIMEOUT)
                    # close, then collect the waiter so that aioquic's ConnectionError is consumed
                    client.close()
                    await asyncio.wait({waiter}, timeout=2)
                    if waiter.done() and not waiter.cancelled():
                        waiter.exception()
                    else:
                        waiter.cancel()
                    return
                try:
                    waiter.result()
                except ConnectionError:
                    ev = quic._close_event
                    code = getattr(ev, "error_code", None)
                    reason = getattr(ev, "reason_phrase", "") or ""
                    # 0x100-0x1ff: CRYPTO_ERROR carrying a TLS alert (RFC 9001 s4.8)
                    failure = SSL_FAILED_HANDSHAKE if code is not None and 0x100 <= code <= 0x1FF else (
                        f"unknown_failure: quic_connection_close: {reason or code}")
                    step.fail(failure, close_error_code=code, close_reason=reason)
                    return
                tls = quic.tls
                chain = [c for c in [tls._peer_certificate, *tls._peer_certificate_chain] if c is not None]
                fields = dict(
                    version=f"0x{quic._version:08x}" if quic._version else None, alpn=tls.alpn_negotiated,
                    peer_certificates=[cert_summary(c) for c in chain],
                    verification=verify_chain(chain, sni or t.host, net.ca_file), t_handshake=round(rec.now(), 6),
                )
                client.close()
                step.ok(**fields)
    except TimeoutError:
        step.fail(GENERIC_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        step.fail(exc)


async def _tcp_tls(rec: Recorder, net: Net, t: Target, sni: str | None, alpn: list[str], timeout: float) -> None:
    """The same handshake over TCP (TLS with the same SNI): ``connect`` + ``tls_handshake``.

    QUIC failing while this succeeds points at UDP/QUIC-specific interference;
    both failing at something about the host or the name.
    """
    from cryptography import x509

    # h3 is QUIC-only; over TCP offer what a browser would for the same origin
    tcp_alpn = ["h2", "http/1.1"] if alpn == ["h3"] else alpn
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if writer is None:
        return
    step = rec.begin("tls_handshake", conn.id, address=t.address, server_name=sni, alpn_offered=tcp_alpn,
                     compare_with="quic_handshake")
    try:
        await net.start_tls(writer, net.tls_context(verify=False, alpn=tcp_alpn), sni, timeout=timeout)
        so = writer.get_extra_info("ssl_object")
        der = so.getpeercert(binary_form=True) if so else None
        leaf = x509.load_der_x509_certificate(der) if der else None
        step.ok(tls_version=so.version() if so else None, cipher=(so.cipher() or [None])[0] if so else None,
                alpn=so.selected_alpn_protocol() if so else None,
                peer_certificates=[cert_summary(leaf)] if leaf is not None else [],
                verification=verify_chain([leaf], sni or t.host, net.ca_file) if leaf is not None else None)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        step.fail(exc)
    finally:
        await close_writer(writer)


def target_from_url(url: str) -> str | None:
    """A campaign list entry ``quic://...`` is a target; website URLs are not."""
    return scheme_target(url, NAME)
