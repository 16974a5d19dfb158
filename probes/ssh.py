"""``ssh``: SSH banner exchange and the server's KEXINIT (RFC 4253).

Connects over TCP, sends our identification line and a KEXINIT offering
common algorithms (as a real client does, so DPI that waits for the client's
KEXINIT sees one), then records the server's identification and the
algorithm lists of its KEXINIT. No key exchange is performed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from censorscope.probes.net import Net
from censorscope.probes.observation import Observation
from censorscope.probes.vpn_common import (
    CLOSE_WAIT,
    close_writer,
    config_or_empty,
    new_recorder,
    protocol_failure,
    target_and_config,
    tcp_connect,
    url_targets,
)
from censorscope.probes.wire import ssh as wire

NAME = "ssh"
VERSION = "0.1.0"
SUMMARY = "SSH banner exchange and KEXINIT algorithm lists."
TARGET_HELP = "ssh://IP[:PORT] or IP[:PORT]"


@dataclass
class Options:
    """Options of the ssh probe."""

    timeout: float = field(default=10.0, metadata={"help": "Seconds for connect and for each read."})
    config: str | None = field(default=None, metadata={"help": "TOML file: timeout, client_banner."})


async def _read_banner(reader: asyncio.StreamReader, buf: bytearray, timeout: float) -> tuple[wire.Banner, int]:
    while True:
        try:
            return wire.parse_banner(bytes(buf))
        except wire.SshWireError:
            if b"\n" in buf and len(buf) > 8192:
                raise
        chunk = await asyncio.wait_for(reader.read(4096), timeout)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(buf), None)
        buf += chunk


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog: connect, the
    server's banner, the KEXINIT's length and its rest, ``timeout`` each, then the close (a server
    trickling bytes just under ``timeout`` apart can hold it longer: that is what the watchdog is for)."""
    timeout = float(config_or_empty(target, options.config).get("timeout", options.timeout))
    return 4 * timeout + CLOSE_WAIT


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Connect, exchange banners and KEXINIT; record ``connect`` and ``ssh_handshake``."""
    t, cfg = target_and_config(target, "ssh", 22, options.config)
    timeout = float(cfg.get("timeout", options.timeout))
    rec = new_recorder(net)
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return rec.observations
    banner_out = wire.build_banner(str(cfg.get("client_banner", "censorscope_0.1")))
    step = rec.begin("ssh_handshake", conn.id, address=t.address, client_banner=banner_out.decode().strip())
    sent = received = 0
    buf = bytearray()
    fields: dict = {}
    try:
        writer.write(banner_out)
        sent += len(banner_out)
        banner, used = await _read_banner(reader, buf, timeout)
        fields.update(
            server_banner=banner.raw, proto_version=banner.proto_version,
            software_version=banner.software_version, banner_comments=banner.comments,
            preamble=banner.preamble, t_banner=round(rec.now(), 6),
        )
        kex_out = wire.wrap_packet(wire.build_kexinit())
        writer.write(kex_out)
        sent += len(kex_out)
        rest = bytearray(buf[used:])
        while len(rest) < 4:
            rest += await _read_some(reader, timeout)
        need = wire.packet_length(bytes(rest[:4]))
        while len(rest) < need:
            rest += await _read_some(reader, timeout)
        received = used + len(rest)
        kex = wire.parse_kexinit(wire.unwrap_packet(bytes(rest[:need])))
        fields.update(kexinit=kex.lists, first_kex_packet_follows=kex.first_kex_packet_follows)
        step.ok(bytes_sent=sent, bytes_received=received, **fields)
    except wire.SshWireError as exc:
        step.fail(protocol_failure(str(exc)), bytes_sent=sent, bytes_received=max(received, len(buf)),
                  response_head=bytes(buf[:64]).hex(), **fields)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        step.fail(exc, bytes_sent=sent, bytes_received=max(received, len(buf)), **fields)
    finally:
        await close_writer(writer)
    return rec.observations


async def _read_some(reader: asyncio.StreamReader, timeout: float) -> bytes:
    chunk = await asyncio.wait_for(reader.read(65536), timeout)
    if not chunk:
        raise asyncio.IncompleteReadError(b"", None)
    return chunk


target_from_url = url_targets(NAME)
