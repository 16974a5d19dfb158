"""``pptp``: PPTP control connection (RFC 2637) on TCP 1723.

Sends a Start-Control-Connection-Request and records the server's
Start-Control-Connection-Reply: result and error codes, protocol version,
capabilities, hostname and vendor strings. No call or tunnel is set up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from censorscope.probes.net import Net
from censorscope.probes.observation import Observation
from censorscope.probes.vpn_common import (
    close_writer,
    new_recorder,
    protocol_failure,
    read_exact,
    target_and_config,
    tcp_connect,
    url_targets,
)
from censorscope.probes.wire import pptp as wire

NAME = "pptp"
VERSION = "0.1.0"
SUMMARY = "PPTP Start-Control-Connection exchange on TCP 1723."
TARGET_HELP = "pptp://IP[:PORT] or IP[:PORT]"


@dataclass
class Options:
    """Options of the pptp probe."""

    timeout: float = field(default=10.0, metadata={"help": "Seconds for connect and for the reply."})
    config: str | None = field(default=None, metadata={"help": "TOML file: timeout, hostname, vendor."})


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """SCCRQ -> SCCRP; records ``connect`` and ``pptp_control``."""
    t, cfg = target_and_config(target, "pptp", 1723, options.config)
    timeout = float(cfg.get("timeout", options.timeout))
    rec = new_recorder(net)
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return rec.observations
    request = wire.build_sccrq(str(cfg.get("hostname", "censorscope")), str(cfg.get("vendor", "censorscope")))
    step = rec.begin("pptp_control", conn.id, address=t.address, bytes_sent=len(request))
    got = b""
    try:
        writer.write(request)
        got = await read_exact(reader, 2, timeout)
        got += await read_exact(reader, wire.message_length(got) - 2, timeout)
        msg = wire.parse_control(got)
        fields = dict(bytes_received=len(got), control_type=msg.control_type)
        if msg.control_type != wire.SCCRP:
            step.fail(protocol_failure(f"expected SCCRP, got control type {msg.control_type}"), **fields)
        else:
            step.ok(
                **fields, protocol_version=f"{msg.protocol_version >> 8}.{msg.protocol_version & 0xFF}",
                result_code=msg.result_code, result_text=msg.result_text, error_code=msg.error_code,
                framing_capabilities=msg.framing_capabilities, bearer_capabilities=msg.bearer_capabilities,
                maximum_channels=msg.maximum_channels, firmware_revision=msg.firmware_revision,
                hostname=msg.hostname, vendor=msg.vendor,
            )
    except wire.PptpWireError as exc:
        step.fail(protocol_failure(str(exc)), bytes_received=len(got), response_head=got[:64].hex())
    except asyncio.IncompleteReadError as exc:
        step.fail(exc, bytes_received=len(got) + len(exc.partial))
    except Exception as exc:  # noqa: BLE001
        step.fail(exc, bytes_received=len(got))
    finally:
        await close_writer(writer)
    return rec.observations


target_from_url = url_targets(NAME)
