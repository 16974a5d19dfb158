"""Residual censorship: after a trigger, the (client, server, server port) triple is punished.

For ``duration`` seconds after any behaviour reports a trigger (a reset or block
page), new connections from the client to that server port are punished with
probability ``probability``: "reset" lets the handshake complete and resets
both ends (exact sequence numbers) on the first data segment; "drop" drops every
client packet of the connection, so it times out. Other ports and clients are
unaffected. The GFW's penalty box lasts ~90 s and hits 50-75 % of later
connections (Rambert et al., WWW 2021); tests use seconds and probability 1.
A new trigger on a punished triple restarts its window. The decision is taken
once per connection, on its first packet seen during the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..actions import Action, Drop, Inject, Log
from ..first_bytes import Seen
from ..forge import rst_to_client, rst_to_server
from .base import (
    FIRST_TCP_PACKETS,
    STAGE_ADDRESS,
    Behaviour,
    Context,
    FingerprintParams,
    Rule,
    check_probability,
)

MAX_CONNS = 65536
FORGET_AFTER = 600.0  # seconds after its end a window is forgotten without logging its expiry


@dataclass(frozen=True, kw_only=True)
class Params(FingerprintParams):
    """``duration`` in seconds; ``mode`` "reset" or "drop"; ``probability`` per connection."""

    duration: float = 90.0
    mode: Literal["reset", "drop"] = "reset"
    probability: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        check_probability(self.probability)


class Residual(Behaviour):
    """Penalty box on (client, server, port) after a trigger."""

    name = "residual"
    Params = Params
    stage = STAGE_ADDRESS

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.until: dict[tuple[str, str, int], float] = {}  # triple -> end of window
        self.conns: dict[tuple[str, int, str, int], bool] = {}  # connection -> punished?
        self.fp = params.fingerprint()

    def queue_rules(self) -> list[Rule]:
        """The first packets of every TCP flow (where the punishment happens)."""
        return [Rule("filter", FIRST_TCP_PACKETS)]

    def on_trigger(self, client: str, server: str, port: int, reason: str, now: float) -> list[Action]:
        """Open (or restart) the window for the triple."""
        self.until = {k: end for k, end in self.until.items() if end > now - FORGET_AFTER}  # long over
        if len(self.conns) > MAX_CONNS:
            self.conns.clear()
        fresh = self.until.get((client, server, port), 0.0) <= now
        self.until[(client, server, port)] = now + self.params.duration
        return [Log("residual_start" if fresh else "residual_restart",
                    {"after": reason, "duration": self.params.duration})]

    def active(self, client: str, server: str, port: int, now: float) -> bool:
        """Whether the triple is punished at ``now``."""
        end = self.until.get((client, server, port))
        return end is not None and now < end

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Punish client packets of connections on a triple inside its window."""
        pkt = seen.pkt
        if not pkt.is_tcp:
            return []
        triple = (pkt.src, pkt.dst, pkt.dport)
        end = self.until.get(triple)
        if end is None:
            return []
        if now >= end:
            del self.until[triple]
            self.conns = {k: v for k, v in self.conns.items() if (k[0], k[2], k[3]) != triple}
            return [Log("residual_expired", {"expired_ago": round(now - end, 3)})]
        key = pkt.key()
        if pkt.is_syn or key not in self.conns:
            self.conns[key] = self.ctx.rng.random() < self.params.probability
            if not self.conns[key]:
                return [Log("residual_spared", {"remaining": round(end - now, 3)})]
        if not self.conns[key]:
            return []
        if self.params.mode == "drop":
            return [Drop(), Log("residual_drop", {"remaining": round(end - now, 3)})]
        if not pkt.payload:
            return []
        rng = self.ctx.rng
        return [
            Drop(),
            Inject(rst_to_server(pkt, self.fp, rng), pkt.dst, "rst_to_server"),
            Inject(rst_to_client(pkt, self.fp, rng), pkt.src, "rst_to_client"),
            Log("residual_rst", {"remaining": round(end - now, 3), "server_rst_seq": pkt.seq,
                                 "client_rst_seq": pkt.ack}),
        ]
