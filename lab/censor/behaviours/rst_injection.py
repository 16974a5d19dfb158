"""RST injection to both ends on HTTP Host/keywords and TLS SNI (GFW-style).

The triggering segment is dropped and two RSTs carry the exact sequence numbers
Linux accepts (RFC 5961; see ``forge.rst_to_server``/``rst_to_client``). Only a
fraction of triggering flows is reset: the GFW reset ~75 % of requests carrying
an HTTP keyword (Rambert et al., "Chinese Wall or Swiss Cheese?", WWW 2021);
the default here is 1.0 so that tests are deterministic. Each reset reports a
trigger on (client, server, server port), which ``residual`` turns into a
penalty box.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions import Action, Drop, Inject, Log, Trigger
from ..first_bytes import Seen
from ..forge import rst_to_client, rst_to_server
from .base import FIRST_TCP_PACKETS, Behaviour, Context, FingerprintParams, Rule, check_probability
from .request_match import RequestMatcher


@dataclass(frozen=True, kw_only=True)
class Params(FingerprintParams):
    """Lists of SNI patterns, HTTP Host patterns and HTTP keywords (Host or %-decoded path)."""

    sni: tuple[str, ...] = ()
    http_hosts: tuple[str, ...] = ()
    http_keywords: tuple[str, ...] = ()
    probability: float = 1.0
    reassemble: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.sni or self.http_hosts or self.http_keywords):
            raise ValueError("give at least one of sni, http_hosts, http_keywords")
        check_probability(self.probability)


class RstInjection(Behaviour):
    """Reset both ends of flows whose first request matches."""

    name = "rst_injection"
    Params = Params

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.matcher = RequestMatcher(
            self.key, sni=params.sni, http_hosts=params.http_hosts, http_keywords=params.http_keywords,
            reassemble=params.reassemble,
        )
        self.fp = params.fingerprint()

    def queue_rules(self) -> list[Rule]:
        """The first packets of every TCP flow (any port)."""
        return [Rule("filter", FIRST_TCP_PACKETS)]

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Drop a matching segment and reset both ends (with probability ``probability``)."""
        hit = self.matcher.check(seen)
        if hit is None:
            return []
        pkt = seen.pkt
        if self.ctx.rng.random() >= self.params.probability:
            return [Log("spared", hit.details())]
        rng = self.ctx.rng
        return [
            Drop(),
            Inject(rst_to_server(pkt, self.fp, rng), pkt.dst, "rst_to_server"),
            Inject(rst_to_client(pkt, self.fp, rng), pkt.src, "rst_to_client"),
            Trigger(pkt.src, pkt.dst, pkt.dport, self.name),
            Log("rst", {**hit.details(), "server_rst_seq": pkt.seq, "client_rst_seq": pkt.ack}),
        ]
