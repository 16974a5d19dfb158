"""``ikev2``: IKEv2 IKE_SA_INIT on UDP 500 or 4500 (RFC 7296).

Sends an IKE_SA_INIT request as a real initiator would: common proposals
(AES-CBC/HMAC and AES-GCM with DH groups 19, 14, 31), a real KE value, a
32-byte nonce and NAT-detection notifies; on UDP 4500 every message carries
the 4-byte non-ESP marker (RFC 3948). If the responder asks for a COOKIE or
a different DH group (INVALID_KE_PAYLOAD), the probe retries once with it,
again as a real initiator does. It records every response: chosen proposal,
KE group, nonce length, notifies (NO_PROPOSAL_CHOSEN …), vendor IDs. No
IKE_AUTH is attempted.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from censorscope.probes.errors import ConfigError
from censorscope.probes.net import Net
from censorscope.probes.observation import Observation
from censorscope.probes.vpn_common import (
    config_or_empty,
    new_recorder,
    protocol_failure,
    target_and_config,
    udp_exchange,
    udp_open,
    url_targets,
)
from censorscope.probes.wire import ikev2 as wire

#: seconds of silence after which the IKE_SA_INIT request goes out again, unchanged (RFC 7296 s2.1:
#: the initiator retransmits; the timing is the implementation's); a lost datagram is not blocking
UDP_RESEND = 2.0
NAME = "ikev2"
VERSION = "0.1.0"
SUMMARY = "IKEv2 IKE_SA_INIT (UDP 500, or 4500 with the non-ESP marker) with COOKIE / KE retry."
TARGET_HELP = "ikev2://IP[:PORT] (port 4500 adds the non-ESP marker)"
MAX_ATTEMPTS = 3


@dataclass
class Options:
    """Options of the ikev2 probe."""

    group: int = field(default=19, metadata={"help": "DH group of the first KE payload (14, 19, 31).",
                                             "choices": ["14", "19", "31"]})
    nat_t: bool = field(default=False, metadata={"help": "Add the non-ESP marker (implied by port 4500)."})
    timeout: float = field(default=5.0, metadata={"help": "Seconds to wait for each response."})
    config: str | None = field(default=None, metadata={"help": "TOML file: group, nat_t, timeout."})


def _strip(data: bytes, marker: bool) -> bytes:
    if marker:
        if data[:4] != wire.NON_ESP_MARKER:
            raise wire.IkeWireError("datagram on the NAT-T port without the non-ESP marker")
        return data[4:]
    return data


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog: ``MAX_ATTEMPTS``
    exchanges (the first, a COOKIE retry, an INVALID_KE retry), each waiting ``timeout`` at most."""
    cfg = config_or_empty(target, options.config)
    return MAX_ATTEMPTS * float(cfg.get("timeout", options.timeout))


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """IKE_SA_INIT (+ one COOKIE and one KE retry); records ``connect`` and ``ikev2_sa_init``."""
    t, cfg = target_and_config(target, "ikev2", 500, options.config)
    group = int(cfg.get("group", options.group))
    if group not in wire.KeyExchange.SUPPORTED:
        raise ConfigError(f"DH group {group} not supported (14, 19, 31)")
    marker = bool(cfg.get("nat_t", options.nat_t)) or t.port == 4500 or t.params.get("nat_t") == "1"
    timeout = float(cfg.get("timeout", options.timeout))
    groups = [group] + [g for g in (19, 14, 31) if g != group]
    rec = new_recorder(net)
    sock, conn = udp_open(rec, net, t)
    if sock is None:
        return rec.observations
    spi_i = wire.new_spi()
    local_ip, local_port = sock.getsockname()[:2]
    step = rec.begin("ikev2_sa_init", conn.id, address=t.address, nat_t=marker, spi_i=spi_i.hex(),
                     groups_offered=groups)
    attempts: list[dict] = []
    cookie: bytes | None = None
    answer: wire.Message | None = None
    parse_error = None
    last_failure = None
    try:
        for _ in range(MAX_ATTEMPTS):
            ke = wire.KeyExchange(group)
            notifies = [
                (wire.N_NAT_DETECTION_SOURCE_IP, wire.nat_detection_hash(spi_i, b"\x00" * 8, local_ip, local_port)),
                (wire.N_NAT_DETECTION_DESTINATION_IP, wire.nat_detection_hash(spi_i, b"\x00" * 8, t.host, t.port)),
            ]
            msg = wire.build_sa_init(spi_i, wire.default_proposals(groups), group, ke.public, os.urandom(32),
                                     notifies, cookie)
            packet = (wire.NON_ESP_MARKER if marker else b"") + msg
            attempt: dict = {"group": group, "cookie": cookie is not None, "bytes_sent": len(packet), "responses": []}
            attempts.append(attempt)

            def ours(data: bytes) -> bool:
                try:
                    m = wire.parse_message(_strip(data, marker))
                except wire.IkeWireError:
                    return False
                return m.spi_i == spi_i and bool(m.flags & wire.FLAG_RESPONSE)

            res = await udp_exchange(rec, sock, [packet], timeout=timeout, stop=ours, resend_every=UDP_RESEND)
            attempt.update(bytes_sent=res.bytes_sent, transmissions=res.transmissions)
            last_failure = res.failure
            answer = None
            for at, data in res.datagrams:
                item: dict = {"t": round(at, 6), "size": len(data)}
                try:
                    m = wire.parse_message(_strip(data, marker))
                    item.update(wire.summary(m))
                    if m.spi_i == spi_i and m.flags & wire.FLAG_RESPONSE and answer is None:
                        answer = m
                except wire.IkeWireError as exc:
                    item.update(parse_error=str(exc), head=data[:32].hex())
                    parse_error = parse_error or str(exc)
                attempt["responses"].append(item)
            if answer is None:
                break
            c = answer.notify(wire.N_COOKIE)
            inv = answer.notify(wire.N_INVALID_KE_PAYLOAD)
            if c is not None and cookie is None:
                cookie = c.data  # RFC 7296 s2.6: resend with the COOKIE first
                continue
            if inv is not None and len(inv.data) == 2:
                wanted = struct.unpack("!H", inv.data)[0]
                if wanted in wire.KeyExchange.SUPPORTED and wanted != group and not any(
                        a["group"] == wanted for a in attempts):
                    group = wanted  # RFC 7296 s1.2: retry with the group the responder asked for
                    continue
            break
        fields: dict = {"attempts": attempts}
        if answer is not None:
            s = wire.summary(answer)
            errors = [n.name for n in answer.notifies if n.type < 16384]
            result = "SA" if answer.of(wire.PT_SA) and answer.of(wire.PT_KE) else (errors[0] if errors else "other")
            fields.update(result=result, group=group, spi_r=s["spi_r"], notifies=s["notifies"],
                          chosen_proposal=s.get("chosen_proposal"), ke_group=s.get("ke_group"),
                          nonce_length=s.get("nonce_length"), vendor_ids=s.get("vendor_ids", []))
            step.ok(**fields)
        elif parse_error:
            step.fail(protocol_failure(parse_error), **fields)
        elif any(a["responses"] for a in attempts):
            step.fail(protocol_failure("no IKE response to our SPI"), **fields)
        else:
            step.fail(last_failure or "generic_timeout_error", **fields)
    finally:
        sock.close()
    return rec.observations


target_from_url = url_targets(NAME)
