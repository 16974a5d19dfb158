"""``httpconnect``: HTTP CONNECT proxy reachability (RFC 9110 s9.3.6).

Sends ``CONNECT dest HTTP/1.1`` and records the proxy's status line and
headers. A 2xx status shows the proxy is reachable and agreed to relay.
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
    proxy_destination,
    target_and_config,
    tcp_connect,
    url_targets,
)
from censorscope.probes.wire import socks as wire

NAME = "httpconnect"
VERSION = "0.1.0"
SUMMARY = "HTTP CONNECT proxy reachability: CONNECT to a destination, record the status."
TARGET_HELP = "httpconnect://IP[:PORT]?dest=HOST:PORT"
MAX_HEAD = 65536


@dataclass
class Options:
    """Options of the httpconnect probe."""

    dest: str | None = field(default=None, metadata={"help": "HOST:PORT to CONNECT to (or ?dest= in the target)."})
    timeout: float = field(default=10.0, metadata={"help": "Seconds for connect and for the response head."})
    config: str | None = field(default=None, metadata={"help": "TOML file: dest, timeout, headers (table)."})


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """CONNECT through the proxy; records ``connect`` and ``proxy_connect``."""
    t, cfg = target_and_config(target, "httpconnect", 8080, options.config)
    dest, _, _ = proxy_destination(t, options, cfg, NAME)
    timeout = float(cfg.get("timeout", options.timeout))
    extra = [(str(k), str(v)) for k, v in dict(cfg.get("headers", {})).items()]
    rec = new_recorder(net)
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return rec.observations
    step = rec.begin("proxy_connect", conn.id, proxy_type="http", address=t.address, destination=dest)
    buf = b""
    try:
        writer.write(wire.build_http_connect(dest, extra))
        while b"\r\n\r\n" not in buf:
            chunk = await asyncio.wait_for(reader.read(4096), timeout)
            if not chunk:
                raise asyncio.IncompleteReadError(buf, None)
            buf += chunk
            if len(buf) > MAX_HEAD:
                raise wire.HttpConnectWireError("response head larger than 64 KiB")
        head = wire.parse_http_head(buf)
        fields = dict(status=head.status, reason=head.reason, http_version=head.version,
                      headers=[list(h) for h in head.headers])
        if 200 <= head.status < 300:
            step.ok(**fields)
        else:
            step.fail(f"unknown_failure: http_connect_status: {head.status}", **fields)
    except wire.HttpConnectWireError as exc:
        step.fail(protocol_failure(str(exc)), response_head=buf[:64].hex())
    except Exception as exc:  # noqa: BLE001
        step.fail(exc, bytes_received=len(buf))
    finally:
        await close_writer(writer)
    return rec.observations


target_from_url = url_targets(NAME)
