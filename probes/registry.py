"""The explicit list of probes.

Each probe is one module with this contract (see docs/observations.md)::

    NAME: str            # registry key, also the CLI subcommand
    VERSION: str         # stored as probe_version; bump when observations change
    SUMMARY: str         # one line for --help
    TARGET_HELP: str     # the target's form, e.g. "HOST:PORT"
    @dataclass class Options: ...   # fields become CLI options (metadata: help, choices)
    async def measure(target: str, net: Net, options: Options) -> list[Observation]
    def target_from_url(url: str) -> str | None   # optional: campaign input -> target
    def worst_case(target: str, options: Options) -> float   # optional: see below

``measure`` raises only ``ProbeError`` subclasses (the probe could not run);
everything the network did is recorded in the observations.

``worst_case`` is an upper bound, in seconds, of one ``measure`` of
``target`` with ``options`` when every step waits out its timeout: attempts x
timeouts, plus delays, closes and hold windows, from the options and the
target's config file (``?config=``), never from the network. It must not
raise (bad options: return anything; ``measure`` reports them). The campaign
runner lets a probe run ``WORST_CASE_MARGIN`` x this long (at least its
default watchdog) before cutting it off, so a probe with several steps
declares it; one whose steps cannot all be bounded (a peer trickling data)
bounds the usual path and says so. A probe cut off by the watchdog keeps the
observations it recorded (``annotations.incomplete``; see measure/runner.py).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from censorscope.probes.errors import UnknownProbe

PROBES: dict[str, str] = {
    # websites
    "dns": "censorscope.probes.dns",
    "system": "censorscope.probes.system",
    "tcp": "censorscope.probes.tcp",
    "tls": "censorscope.probes.tls",
    "http": "censorscope.probes.http",
    "web": "censorscope.probes.web",
    "throughput": "censorscope.probes.throughput",
    # VPN and circumvention
    "openvpn": "censorscope.probes.openvpn",
    "wireguard": "censorscope.probes.wireguard",
    "ikev2": "censorscope.probes.ikev2",
    "pptp": "censorscope.probes.pptp",
    "l2tp": "censorscope.probes.l2tp",
    "sstp": "censorscope.probes.sstp",
    "ssh": "censorscope.probes.ssh",
    "tor": "censorscope.probes.tor",
    "fet": "censorscope.probes.fet",
    "quic": "censorscope.probes.quic",
    "socks": "censorscope.probes.socks",
    "httpconnect": "censorscope.probes.httpconnect",
}


def names() -> list[str]:
    """Registered probe names, in registry order."""
    return list(PROBES)


def load(name: str) -> ModuleType:
    """Import and return the probe module registered as ``name``."""
    try:
        path = PROBES[name]
    except KeyError:
        raise UnknownProbe(f"unknown probe {name!r}; known: {', '.join(PROBES)}") from None
    return importlib.import_module(path)
