"""Block-page injection: a forged HTTP response reaches the client first; the server is reset.

The triggering request segment is dropped; the page is sent as server-to-client
segments starting at the request's ack (the client's rcv_nxt) and acknowledging
the whole request, the last one with FIN; the server gets a RST at the request's
seq. The default page imitates a national block page (headers and body are
configurable, e.g. a 302 redirect to a block-page host).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..actions import Action, Drop, Inject, Log, Trigger
from ..first_bytes import Seen
from ..forge import data_to_client, rst_to_server
from .base import FIRST_TCP_PACKETS, Behaviour, Context, FingerprintParams, Rule, check_probability
from .request_match import RequestMatcher

DEFAULT_BODY = (
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Access restricted</title></head>\n"
    "<body><h1>Access to this resource is restricted</h1>\n"
    "<p>Access to the requested resource has been restricted by decision of the National Registry "
    "of Prohibited Content (censorscope lab).</p></body></html>\n"
)


def _default_headers() -> dict[str, str]:
    return {"Content-Type": "text/html; charset=utf-8", "Connection": "close", "Server": "registry-filter"}


@dataclass(frozen=True, kw_only=True)
class Params(FingerprintParams):
    """HTTP Host patterns / keywords that trigger, and the page to send."""

    http_hosts: tuple[str, ...] = ()
    http_keywords: tuple[str, ...] = ()
    status: int = 403
    reason: str = "Forbidden"
    headers: dict[str, str] = field(default_factory=_default_headers)
    body: str = DEFAULT_BODY
    probability: float = 1.0
    reassemble: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.http_hosts or self.http_keywords):
            raise ValueError("give at least one of http_hosts, http_keywords")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status")
        check_probability(self.probability)

    def response(self) -> bytes:
        """The complete forged HTTP response."""
        body = self.body.encode("utf-8")
        head = [f"HTTP/1.1 {self.status} {self.reason}"]
        head += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() != "content-length"]
        head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class BlockpageInjection(Behaviour):
    """Answer matching HTTP requests with a forged page and reset the server side."""

    name = "blockpage_injection"
    Params = Params

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.matcher = RequestMatcher(self.key, http_hosts=params.http_hosts, http_keywords=params.http_keywords,
                                      reassemble=params.reassemble)
        self.page = params.response()
        self.fp = params.fingerprint()

    def queue_rules(self) -> list[Rule]:
        """The first packets of every TCP flow."""
        return [Rule("filter", FIRST_TCP_PACKETS)]

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Drop a matching request segment, inject the page to the client and a RST to the server."""
        hit = self.matcher.check(seen)
        if hit is None:
            return []
        if self.ctx.rng.random() >= self.params.probability:
            return [Log("spared", hit.details())]
        pkt, rng = seen.pkt, self.ctx.rng
        out: list[Action] = [Drop()]
        out += [Inject(raw, pkt.src, "blockpage_segment") for raw in data_to_client(pkt, self.page, self.fp, rng)]
        out += [
            Inject(rst_to_server(pkt, self.fp, rng), pkt.dst, "rst_to_server"),
            Trigger(pkt.src, pkt.dst, pkt.dport, self.name),
            Log("blockpage", {**hit.details(), "status": self.params.status, "page_seq": pkt.ack,
                              "page_bytes": len(self.page), "server_rst_seq": pkt.seq}),
        ]
        return out
