"""What the client's first bytes are: a TLS ClientHello, an HTTP request, or else.

``inspect_payload`` classifies bytes once; ``Seen.inspection`` memoises it for
both views a behaviour may ask for: the current segment alone
(``reassemble=False``) or the reassembled stream prefix (``reassemble=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .http_request import HttpRequest, looks_like_http, parse_request
from .packet import Packet
from .streams import StreamState
from .tls_hello import HelloStatus, looks_like_tls, parse_client_hello


@dataclass(frozen=True, slots=True)
class Inspection:
    """``kind`` is "tls", "http", "other" or "none"; ``complete`` means more bytes cannot change the result."""

    kind: str
    complete: bool
    sni: str | None = None
    http: HttpRequest | None = None


NOTHING = Inspection("none", False)
OTHER = Inspection("other", True)


def inspect_payload(data: bytes) -> Inspection:
    """Classify the start of a client stream."""
    if not data:
        return NOTHING
    if looks_like_tls(data):
        hello = parse_client_hello(data)
        if hello.status is HelloStatus.NOT_TLS:
            return OTHER
        return Inspection("tls", hello.status is not HelloStatus.INCOMPLETE, sni=hello.sni)
    if looks_like_http(data):
        req = parse_request(data)
        return Inspection("http", bool(req and req.complete), http=req)
    return OTHER


@dataclass(slots=True)
class Seen:
    """A queued packet as the behaviours see it: parsed, with its flow state."""

    pkt: Packet
    stream: StreamState | None = None
    grew: bool = False  # this packet extended the reassembled prefix
    _cache: dict[bool, Inspection] = field(default_factory=dict)

    def inspection(self, reassemble: bool) -> Inspection:
        """Inspect this segment alone, or the reassembled prefix it extended."""
        hit = self._cache.get(reassemble)
        if hit is None:
            if reassemble:
                data = self.stream.prefix if (self.stream is not None and self.grew) else b""
            else:
                data = self.pkt.payload
            hit = self._cache[reassemble] = inspect_payload(data)
        return hit
