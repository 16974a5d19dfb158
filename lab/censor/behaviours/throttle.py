"""SNI throttling: flows whose ClientHello names a listed SNI are policed to ``rate``.

The queue verdict marks the matching ClientHello; the kernel copies the mark
to the connection (CONNMARK) and classifies every later packet of the
connection, both directions, into an HTB class of ``rate`` on the censor's two
egress interfaces (``tc.py``). Only the first packets are queued, so bulk data
never leaves the kernel. Russia throttled Twitter to 130-150 kbit/s by SNI
(Xue et al., "Throttling Twitter", IMC 2021); LAB-NOTES measured ~125 kbit/s
for a 128 kbit class against ~48 MB/s unthrottled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import tc
from ..actions import Action, Log, Mark
from ..first_bytes import Seen
from .base import FIRST_TCP_PACKETS, STAGE_SHAPE, Behaviour, Context, Rule
from .request_match import RequestMatcher

_RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps)$")


@dataclass(frozen=True)
class Params:
    """``sni`` patterns; ``rate`` in tc syntax (e.g. "128kbit")."""

    sni: tuple[str, ...]
    rate: str = "128kbit"
    reassemble: bool = True

    def __post_init__(self) -> None:
        if not self.sni:
            raise ValueError("sni must list at least one pattern")
        if not _RATE.match(self.rate):
            raise ValueError(f"rate {self.rate!r} is not a tc rate such as '128kbit'")


class Throttle(Behaviour):
    """Classify flows with a listed SNI into a slow HTB class."""

    name = "throttle"
    Params = Params
    stage = STAGE_SHAPE

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        if ctx.index >= 16:
            raise ValueError("throttle must be among the first 16 behaviours (mark bits)")
        self.mark = 1 << (16 + ctx.index)
        self.classid = f"1:{0x10 + ctx.index:x}"
        self.matcher = RequestMatcher(self.key, sni=params.sni, reassemble=params.reassemble)

    def queue_rules(self) -> list[Rule]:
        """The first packets of every TCP flow."""
        return [Rule("filter", FIRST_TCP_PACKETS)]

    def kernel_rules(self) -> list[Rule]:
        """Copy the verdict mark to the connection; classify the connection's packets."""
        m = f"{self.mark:#x}"
        return [
            Rule("mangle", ("-m", "mark", "--mark", f"{m}/{m}", "-j", "CONNMARK", "--or-mark", m)),
            Rule("mangle", ("-m", "connmark", "--mark", f"{m}/{m}", "-j", "CLASSIFY", "--set-class", self.classid)),
        ]

    def start(self) -> None:
        """Create the HTB class on both egress interfaces."""
        for dev in (self.ctx.client_side, self.ctx.server_side):
            tc.add_class(dev, self.classid, self.params.rate)

    def stop(self) -> None:
        """Remove the class (and the HTB root once no class is left)."""
        for dev in (self.ctx.client_side, self.ctx.server_side):
            tc.remove_class(dev, self.classid)

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Mark the matching ClientHello."""
        hit = self.matcher.check(seen)
        if hit is None:
            return []
        return [Mark(self.mark), Log("throttle", {**hit.details(), "rate": self.params.rate})]
