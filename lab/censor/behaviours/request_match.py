"""Match the first request of a TCP flow (HTTP Host/keywords, TLS SNI): shared by
rst_injection, blockpage_injection and throttle.

``reassemble`` chooses what is inspected: the reassembled stream prefix
(a ClientHello or request split over several segments still matches) or each
segment alone (splitting the trigger evades the censor). The default is True:
the GFW reassembles TCP streams (Wang et al., "Your State is Not Mine", IMC 2017),
so a realistic lab censor is not fooled by plain segmentation; scenarios that
model a weaker, per-packet DPI set it to false.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..first_bytes import Seen
from ..matching import DomainMatcher, match_keyword


@dataclass(frozen=True, slots=True)
class RequestMatch:
    """What matched: ``trigger`` is "sni", "http_host" or "http_keyword"."""

    trigger: str
    pattern: str
    value: str

    def details(self) -> dict[str, object]:
        """For the action log."""
        return {"trigger": self.trigger, "match": self.pattern, "value": self.value}


class RequestMatcher:
    """Decides whether a flow's first request matches; remembers final decisions per flow."""

    def __init__(
        self, key: str, *, sni: tuple[str, ...] = (), http_hosts: tuple[str, ...] = (),
        http_keywords: tuple[str, ...] = (), reassemble: bool = True,
    ) -> None:
        self.key = key
        self.sni = DomainMatcher(sni)
        self.hosts = DomainMatcher(http_hosts)
        self.keywords = tuple(http_keywords)
        self.reassemble = reassemble

    def check(self, seen: Seen) -> RequestMatch | None:
        """The match for this packet's flow, at most once per flow; None when nothing (yet) matches."""
        pkt = seen.pkt
        if not pkt.is_tcp or not pkt.payload or seen.stream is None or self.key in seen.stream.decided:
            return None
        insp = seen.inspection(self.reassemble)
        hit = None
        if insp.kind == "tls" and insp.sni:
            pattern = self.sni.match(insp.sni)
            if pattern is not None:
                hit = RequestMatch("sni", pattern, insp.sni)
        elif insp.kind == "http" and insp.http is not None:
            req = insp.http
            pattern = self.hosts.match(req.host)
            if pattern is not None:
                hit = RequestMatch("http_host", pattern, req.host or "")
            else:
                kw = match_keyword(self.keywords, req.path, req.host)
                if kw is not None:
                    hit = RequestMatch("http_keyword", kw, req.path if kw.lower() in req.path else req.host or "")
        if hit is not None or insp.complete:
            seen.stream.decided.add(self.key)
        return hit
