"""The contract every censor behaviour follows.

A behaviour is one small module: a ``Params`` dataclass (validated by
``params.build_params``) and a ``Behaviour`` subclass that says

- which packets the kernel must queue to it (``queue_rules``: iptables matches
  in the FORWARD path; everything else stays in the kernel),
- which other kernel rules it needs (``kernel_rules``: nat/mangle),
- what to do with a queued packet (``on_packet``: a pure function of the parsed
  packet and the time, returning actions from ``actions.py``),
- what to do when another behaviour reports a ``Trigger`` (``on_trigger``),
- side effects to set up and tear down (``start``/``stop``: tc classes, proxies).

Behaviours run in ``stage`` order (address filters, then content inspection,
then shaping), in configuration order within a stage; the first one that drops
a packet ends its evaluation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..actions import Action
from ..first_bytes import Seen
from ..forge import Fingerprint

STAGE_ADDRESS, STAGE_INSPECT, STAGE_SHAPE = 0, 1, 2

#: iptables matches queueing the first packets of every TCP flow (both directions);
#: enough for the handshake plus a ClientHello or request split over a few segments.
FIRST_TCP_PACKETS = (
    "-p", "tcp", "-m", "connbytes", "--connbytes", "0:6", "--connbytes-dir", "both", "--connbytes-mode", "packets",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One iptables rule in the censor's own chain of ``table`` (family None = IPv4 and IPv6)."""

    table: Literal["filter", "nat", "mangle"]
    args: tuple[str, ...]
    family: int | None = None


def family_of(address: str) -> int:
    """4 or 6."""
    return 6 if ":" in address else 4


LogFn = Callable[[str, dict[str, object], str, dict[str, object]], None]


@dataclass
class Context:
    """What a behaviour instance knows about its surroundings."""

    index: int  # position in the configuration (unique per instance)
    client_side: str = "cli0"
    server_side: str = "up0"
    state_dir: Path = field(default_factory=lambda: Path("/tmp"))
    rng: random.Random = field(default_factory=random.Random)
    # Thread-safe log for work done outside on_packet (e.g. the TLS proxy): (behaviour, flow, action, details).
    log: LogFn = lambda behaviour, flow, action, details: None


@dataclass(frozen=True, kw_only=True)
class FingerprintParams:
    """IP TTL ("copy" = the triggering packet's), IP-ID ("random" or fixed) and TCP window of injected packets."""

    ttl: int | Literal["copy"] = 64
    ip_id: int | Literal["random"] = "random"
    window: int = 8192

    def __post_init__(self) -> None:
        if self.ttl != "copy" and not 1 <= int(self.ttl) <= 255:
            raise ValueError(f"ttl {self.ttl} outside 1-255")
        if self.ip_id != "random" and not 0 <= int(self.ip_id) <= 0xFFFF:
            raise ValueError(f"ip_id {self.ip_id} outside 0-65535")
        if not 0 <= self.window <= 0xFFFF:
            raise ValueError(f"window {self.window} outside 0-65535")

    def fingerprint(self) -> Fingerprint:
        """The injection fingerprint these parameters describe."""
        return Fingerprint(ttl=self.ttl, ip_id=self.ip_id, window=self.window)


def check_probability(p: float, what: str = "probability") -> None:
    """Raise ValueError unless 0 <= p <= 1."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} {p} outside [0, 1]")


class Behaviour:
    """Base class; subclasses set ``name``, ``Params`` and ``stage`` and override what they need."""

    name: ClassVar[str]
    Params: ClassVar[type]
    stage: ClassVar[int] = STAGE_INSPECT

    def __init__(self, params: Any, ctx: Context) -> None:
        self.params = params
        self.ctx = ctx
        self.key = f"{self.name}#{ctx.index}"  # per-instance key in flow state

    def queue_rules(self) -> list[Rule]:
        """iptables matches (filter table, FORWARD path) whose packets must be queued to the censor."""
        return []

    def kernel_rules(self) -> list[Rule]:
        """Complete iptables rules (with target) for the nat/mangle chains."""
        return []

    def start(self) -> None:
        """Set up side effects (called after the rules are installed)."""

    def stop(self) -> None:
        """Undo ``start`` (called on reload and exit; must not raise)."""

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Actions for one queued packet."""
        return []

    def on_trigger(self, client: str, server: str, port: int, reason: str, now: float) -> list[Action]:
        """React to censorship triggered by another behaviour on (client, server, port); may return Logs."""
        return []
