"""``sstp``: SSTP call setup (MS-SSTP) over HTTPS.

Opens TLS (certificate recorded and verified separately, as in ``quic``),
sends ``SSTP_DUPLEX_POST /sra_{BA195980-...}/`` and records the HTTP status
and headers. On ``200`` it sends SSTP_MSG_CALL_CONNECT_REQUEST (PPP) and
records the server's answer (CALL_CONNECT_ACK with a crypto binding request,
or NAK/ABORT), then closes: no PPP is negotiated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from censorscope.probes.net import Net
from censorscope.probes.observation import Observation
from censorscope.probes.quic import VERIFY_ALLOWANCE, cert_summary, verify_chain
from censorscope.probes.vpn_common import (
    CLOSE_WAIT,
    close_writer,
    config_or_empty,
    new_recorder,
    protocol_failure,
    read_exact,
    target_and_config,
    tcp_connect,
    unread,
    url_targets,
)
from censorscope.probes.wire import socks as http_wire
from censorscope.probes.wire import sstp as wire

NAME = "sstp"
VERSION = "0.1.0"
SUMMARY = "SSTP over HTTPS: SSTP_DUPLEX_POST, then Call Connect Request; records the answers."
TARGET_HELP = "sstp://IP[:PORT][?sni=NAME]"


@dataclass
class Options:
    """Options of the sstp probe."""

    sni: str | None = field(default=None, metadata={"help": "TLS server name and Host header (default: the IP)."})
    timeout: float = field(default=10.0, metadata={"help": "Seconds for connect, TLS and each answer."})
    config: str | None = field(default=None, metadata={"help": "TOML file: sni, timeout."})


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog: connect, TLS, the
    HTTP response head and the two reads of the call-connect answer, ``timeout`` each, the
    certificate's verification and the close (a server trickling its head in reads just under
    ``timeout`` can hold it longer: that is what the watchdog is for)."""
    timeout = float(config_or_empty(target, options.config).get("timeout", options.timeout))
    return 5 * timeout + VERIFY_ALLOWANCE + CLOSE_WAIT


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """TLS + SSTP call setup; records ``connect`` and ``sstp_handshake``."""
    from cryptography import x509

    t, cfg = target_and_config(target, "sstp", 443, options.config)
    sni = t.params.get("sni") or cfg.get("sni") or options.sni
    timeout = float(cfg.get("timeout", options.timeout))
    rec = new_recorder(net)
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return rec.observations
    step = rec.begin("sstp_handshake", conn.id, address=t.address, server_name=sni)
    fields: dict = {}
    buf = b""
    try:
        await net.start_tls(writer, net.tls_context(verify=False), sni, timeout=timeout)
        so = writer.get_extra_info("ssl_object")
        der = so.getpeercert(binary_form=True) if so else None
        leaf = x509.load_der_x509_certificate(der) if der else None
        fields.update(tls_version=so.version() if so else None, t_tls=round(rec.now(), 6))
        if leaf is not None:
            fields["peer_certificate"] = cert_summary(leaf)
            # only the leaf is available from ssl on Python 3.11: intermediates must be in the store
            fields["verification"] = verify_chain([leaf], sni or t.host, net.ca_file)
        writer.write(wire.build_request(sni or t.host))
        while b"\r\n\r\n" not in buf:
            chunk = await asyncio.wait_for(reader.read(4096), timeout)
            if not chunk:
                raise asyncio.IncompleteReadError(buf, None)
            buf += chunk
            if len(buf) > 65536:
                raise http_wire.HttpConnectWireError("response head larger than 64 KiB")
        head = http_wire.parse_http_head(buf)
        fields.update(status=head.status, reason=head.reason, headers=[list(h) for h in head.headers])
        if head.status != 200:
            step.fail(f"unknown_failure: sstp_http_status: {head.status}", **fields)
            return rec.observations
        rest = buf[buf.find(b"\r\n\r\n") + 4 :]
        writer.write(wire.build_call_connect_request())
        while len(rest) < 4:
            rest += await read_exact(reader, 4 - len(rest), timeout)
        n = wire.packet_length(rest[:4])
        if len(rest) < n:
            rest += await read_exact(reader, n - len(rest), timeout)
        pkt = wire.parse_packet(rest[:n])
        fields.update(sstp_message=pkt.message_name,
                      sstp_attributes=[wire.ATTRIBUTES.get(a, str(a)) for a, _ in pkt.attributes])
        step.ok(**fields)
    except (wire.SstpWireError, http_wire.HttpConnectWireError) as exc:
        step.fail(protocol_failure(str(exc)), response_head=buf[:64].hex(), **fields)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        if "tls_version" not in fields and unread(reader):
            fields["pre_tls_head"] = unread(reader)[:64].hex()
        step.fail(exc, **fields)
    finally:
        await close_writer(writer)
    return rec.observations


target_from_url = url_targets(NAME)
