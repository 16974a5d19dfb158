"""``l2tp``: L2TPv2 control connection (RFC 2661) on UDP 1701.

Sends an SCCRQ with the mandatory AVPs and records every datagram that comes
back within the window; the first valid SCCRP is parsed (AVPs, assigned
tunnel id, host and vendor names). The probe then closes the half-open
tunnel with a StopCCN, as a well-behaved LAC would.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from censorscope.probes.net import Net
from censorscope.probes.observation import Observation
from censorscope.probes.vpn_common import (
    fail_unanswered,
    new_recorder,
    target_and_config,
    udp_exchange,
    udp_open,
    url_targets,
)
from censorscope.probes.wire import l2tp as wire

#: seconds of silence after which the SCCRQ goes out again (RFC 2661 s5.8 recommends 1 s as the
#: initial retransmission timeout); a single lost datagram must not read as blocking
UDP_RESEND = 1.0
NAME = "l2tp"
VERSION = "0.1.0"
SUMMARY = "L2TPv2 SCCRQ -> SCCRP exchange on UDP 1701."
TARGET_HELP = "l2tp://IP[:PORT] or IP[:PORT]"


@dataclass
class Options:
    """Options of the l2tp probe."""

    timeout: float = field(default=5.0, metadata={"help": "Seconds to wait for an answer."})
    hold: float = field(default=0.5, metadata={"help": "Seconds to keep listening after the SCCRP."})
    config: str | None = field(default=None, metadata={"help": "TOML file: timeout, hold, host_name."})


def _is_answer(data: bytes) -> bool:
    try:
        return wire.parse_message(data).message_type in ("SCCRP", "StopCCN")
    except wire.L2tpWireError:
        return False


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """SCCRQ -> SCCRP (+ StopCCN); records ``connect`` and ``l2tp_control``."""
    t, cfg = target_and_config(target, "l2tp", 1701, options.config)
    timeout = float(cfg.get("timeout", options.timeout))
    hold = float(cfg.get("hold", options.hold))
    rec = new_recorder(net)
    sock, conn = udp_open(rec, net, t)
    if sock is None:
        return rec.observations
    our_tunnel = random.randint(1, 0xFFFF)
    request = wire.build_sccrq(our_tunnel, str(cfg.get("host_name", "censorscope")))
    step = rec.begin("l2tp_control", conn.id, address=t.address, assigned_tunnel_id_sent=our_tunnel)
    try:
        res = await udp_exchange(rec, sock, [request], timeout=timeout, hold=hold, stop=_is_answer,
                                 resend_every=UDP_RESEND)
        responses = []
        answer = None
        parse_error = None
        for at, data in res.datagrams:
            item: dict = {"t": round(at, 6), "size": len(data)}
            try:
                msg = wire.parse_message(data)
                item.update(message_type=msg.message_type or "ZLB", tunnel_id=msg.tunnel_id, ns=msg.ns, nr=msg.nr,
                            avps=msg.summary())
                if answer is None and msg.message_type in ("SCCRP", "StopCCN"):
                    answer = msg
            except wire.L2tpWireError as exc:
                item.update(parse_error=str(exc), head=data[:32].hex())
                parse_error = parse_error or str(exc)
            responses.append(item)
        fields: dict = dict(bytes_sent=res.bytes_sent, transmissions=res.transmissions, responses=responses)
        if answer is not None:
            fields.update(message_type=answer.message_type, avps=answer.summary(), tunnel_id=answer.tunnel_id)
            tid = answer.first(wire.AVP_ASSIGNED_TUNNEL_ID)
            if tid is not None and len(tid) == 2:
                peer_tunnel = struct.unpack("!H", tid)[0]
                fields["assigned_tunnel_id"] = peer_tunnel
                if answer.message_type == "SCCRP":
                    stop = wire.build_stopccn(peer_tunnel, our_tunnel, 1, (answer.ns + 1) & 0xFFFF)
                    try:
                        sock.send(stop)
                        fields["stopccn_sent"] = True
                    except OSError:
                        fields["stopccn_sent"] = False
            if answer.message_type == "SCCRP":
                step.ok(**fields)
            else:
                step.fail("unknown_failure: l2tp_stopccn", **fields)
        else:
            fail_unanswered(step, fields, parse_error=parse_error, responses=responses,
                            wanted="SCCRP among the responses", failure=res.failure)
    finally:
        sock.close()
    return rec.observations


target_from_url = url_targets(NAME)
