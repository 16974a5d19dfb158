"""Probe ``tcp``: open one TCP connection to IP:PORT and record how it went.

One ``connect`` observation. Its failure tells apart what a censor can do to
a SYN: ``connection_refused`` (a RST answered it), ``generic_timeout_error``
(nothing came back: black-holing), ``host_unreachable`` /
``network_unreachable`` (an ICMP error or no route), ``connection_reset``.
The connection is closed right after it opened; nothing is sent.

The target is an IP literal: resolving a name would use a resolver the user
did not choose (run the ``dns`` or ``web`` probe for names).

``connect()`` is the building block the ``tls`` and ``web`` probes share.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass, field

from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.net import Net, format_host_port, split_host_port
from censorscope.probes.observation import Observation, Recorder

NAME = "tcp"
VERSION = "1"
SUMMARY = "Open a TCP connection to IP:PORT (refused / reset / timeout / unreachable, with timings)."
TARGET_HELP = "IP:PORT"


@dataclass
class Options:
    """Options of the tcp probe (each becomes a CLI option)."""

    timeout: float = field(default=10.0, metadata={"help": "Seconds to wait for the connection to open."})


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def parse_endpoint(target: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT`` -> (ip, port); ``InvalidTarget`` otherwise."""
    try:
        host, port = split_host_port(target)
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidTarget(f"expected IP:PORT (an IP literal, [v6]:PORT for IPv6), got {target!r}: {exc}") from None
    return str(ip), port


#: seconds ``close`` waits for a connection to close (counted by the ``worst_case`` of probes that use it)
CLOSE_WAIT = 2.0


def check_timeout(seconds: float, what: str = "--timeout") -> None:
    """``ConfigError`` unless ``seconds`` is a positive number of seconds."""
    if not seconds > 0:
        raise ConfigError(f"{what} must be > 0 seconds, got {seconds}")


async def connect(
    net: Net, rec: Recorder, ip: str, port: int, *, timeout: float, parent_id: int | None = None
) -> tuple[Observation, Streams | None]:
    """Connect to ``ip:port`` and record a ``connect`` observation.

    Returns the observation and the open streams (``None`` when it failed);
    the caller owns the streams and must close them (``close``).
    """
    step = rec.begin("connect", parent_id, address=format_host_port(ip, port), ip=ip, port=port, proto="tcp")
    try:
        reader, writer = await net.open_tcp(ip, port, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every network failure is data
        return step.fail(exc), None
    sockname = writer.get_extra_info("sockname")
    return step.ok(local_port=sockname[1] if sockname else None), (reader, writer)


async def close(streams: Streams | None) -> None:
    """Close streams quietly: the peer may already have reset them."""
    if streams is None:
        return
    writer = streams[1]
    if writer.transport.is_closing():
        # Already closed underneath us, e.g. by a failed TLS upgrade, which also
        # swapped the protocol: wait_closed() would never return.
        writer.transport.abort()
        return
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT)


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Connect once to ``target`` (IP:PORT) and close."""
    ip, port = parse_endpoint(target)
    check_timeout(options.timeout)
    rec = Recorder(net.clock)
    _, streams = await connect(net, rec, ip, port, timeout=options.timeout)
    await close(streams)
    return rec.observations


_DEFAULT_PORTS = {"http": 80, "https": 443}


def target_from_url(url: str) -> str | None:
    """Campaign input -> target: a URL whose host is an IP literal, as ``IP:PORT``.

    URLs naming a host give None (the runner skips them): this probe never
    resolves names, so that a campaign never silently uses a resolver the user
    did not choose. Measure names with ``web`` or ``dns``.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        ip = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return None
    return format_host_port(str(ip), port) if port else None
