"""What a behaviour may ask the engine to do with a packet.

Behaviours are pure: ``on_packet`` takes a parsed packet and returns a list of
these actions; the engine (``engine.py``) merges them and the daemon applies
them (verdict, mark, delayed verdict, raw-socket injection, log line).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop the packet (it never reaches its destination)."""


@dataclass(frozen=True, slots=True)
class Mark:
    """OR these bits into the packet's netfilter mark (e.g. to classify a flow into a throttled class)."""

    bits: int


@dataclass(frozen=True, slots=True)
class Delay:
    """Hold the packet for ``seconds`` before accepting it."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Inject:
    """Send ``raw`` (a full IP packet) through the censor's raw socket, before the verdict."""

    raw: bytes
    dst: str
    what: str  # e.g. "rst_to_client", for tests and the log


@dataclass(frozen=True, slots=True)
class Log:
    """Write one line to the action log about the current packet's flow."""

    action: str
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Trigger:
    """The flow (client, server, server port) triggered censorship (feeds residual blocking)."""

    client: str
    server: str
    port: int
    reason: str


Action = Drop | Mark | Delay | Inject | Log | Trigger
