"""Probe ``system``: resolve a name the way ordinary applications do (getaddrinfo).

This is the only probe that uses the host's resolver configuration on
purpose: it shows what a browser on this vantage would get (resolv.conf,
nsswitch, /etc/hosts, systemd-resolved, a VPN's DNS ...), which the ``dns``
probe, talking to one resolver with its own sockets, does not. It cannot see
injected-then-real double answers: the C library keeps the first.

``getaddrinfo`` blocks, so it runs in the loop's default thread pool
(``loop.getaddrinfo``); a timeout abandons the wait (the thread finishes on
its own, the C library cannot be interrupted). Failures are classified by
``failures.classify`` (``EAI_NONAME`` -> ``dns_nxdomain_error``, ``EAI_AGAIN``
-> ``dns_temporary_failure``, ``EAI_NODATA`` -> ``dns_no_answer``, ...).

Observation ``resolve``: ``query_name``, ``resolver: "system"``, ``family``,
``addresses`` (unique, in the library's order), ``canonical_name`` (or null).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from censorscope.probes.dns import normalize_name, target_from_url
from censorscope.probes.errors import ConfigError
from censorscope.probes.net import Net
from censorscope.probes.observation import Observation, Recorder

NAME = "system"
VERSION = "0.1.0"
SUMMARY = "Resolve a name with the system resolver (getaddrinfo), as applications on this vantage do."
TARGET_HELP = "NAME"

FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}

__all__ = ["NAME", "VERSION", "SUMMARY", "TARGET_HELP", "Options", "measure", "resolve", "target_from_url"]


@dataclass
class Options:
    """Command-line options of ``censorscope probe system``."""

    family: str = field(default="any", metadata={
        "choices": list(FAMILIES), "help": "Address family to ask for (AF_UNSPEC, AF_INET, AF_INET6)."})
    timeout: float = field(default=10.0, metadata={"help": "Seconds to wait for getaddrinfo."})


async def resolve(
    name: str, rec: Recorder, *, family: str = "any", timeout: float = 10.0, parent_id: int | None = None
) -> Observation:
    """Run getaddrinfo for ``name`` in a thread and record one ``resolve`` observation."""
    if family not in FAMILIES:
        raise ConfigError(f"family must be one of {', '.join(FAMILIES)}")
    if timeout <= 0:
        raise ConfigError("timeout must be > 0")
    qname = normalize_name(name)
    step = rec.begin("resolve", parent_id, query_name=qname, resolver="system", family=family)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(qname, None, family=FAMILIES[family], type=socket.SOCK_STREAM,
                             flags=socket.AI_CANONNAME),
            timeout,
        )
    except Exception as e:  # network failures are data
        return step.fail(e, addresses=[], canonical_name=None)
    addresses: list[str] = []
    canonical = None
    for _fam, _type, _proto, canon, sockaddr in infos:
        canonical = canonical or canon or None
        ip = str(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    return step.ok(addresses=addresses, canonical_name=canonical)


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Resolve ``target`` once with the system resolver."""
    rec = Recorder(net.clock)
    await resolve(target, rec, family=options.family, timeout=options.timeout)
    return rec.observations
