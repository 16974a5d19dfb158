"""Probe ``http``: GET a URL, following redirects by hand, and record every hop.

One ``http_round_trip`` observation. Redirects are followed one by one so that
each response is kept in ``hops`` (``{url, status, headers, location,
address}``); the final response adds ``status``, ``headers``, ``body_length``,
``body_sha256``, ``body_truncated``, ``body_head`` and ``title``.

Limits that keep a hostile or broken server from holding the probe:
``--timeout`` bounds the *whole* measurement (all hops and the body; a timeout
is ``generic_timeout_error`` and keeps what was read), ``--max-body-bytes``
bounds the body (reaching it sets ``body_truncated: true``; that is not a
failure, the hash and length then cover the bytes read), ``--max-redirects``
bounds the chain (one more redirect is ``http_too_many_redirects``, all hops
kept).

Every measurement uses a fresh client and a new connection per request, so
no state leaks between measurements. HTTPS is verified against the system
store plus ``Net.ca_file``; a verification failure is the failure of the
round trip (``ssl_*``); the ``tls`` probe records the certificate itself.

``--address IP`` connects to that IP instead of resolving the URL's host
(Host header and SNI stay the URL's): the ``web`` probe uses it to fetch over
the address its own DNS step found. Every other host (the URL's without
``--address``, redirect targets) is resolved through ``--resolver`` when given
(A, then AAAA; each query recorded as a ``dns_query`` observation, only the
first response kept; a failure such as ``dns_nxdomain_error`` ends the round
trip), else by the system resolver, as any HTTP client would.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import html
import ipaddress
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from censorscope.probes import tcp
from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.failures import DNS_NO_ANSWER, HTTP_TOO_MANY_REDIRECTS
from censorscope.probes.net import Net, format_host_port
from censorscope.probes.observation import Observation, Recorder

NAME = "http"
VERSION = "1"
SUMMARY = "GET a URL: every redirect hop, final status, headers, body hash/length/title (bounded size and time)."
TARGET_HELP = "URL"

#: What we send: a common browser's headers, so servers answer as they would to users.
REQUEST_HEADERS = [
    ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/124.0.0.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate"),
]
_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
#: bytes of a redirect's body we read (and drop) before following it
_REDIRECT_BODY_CAP = 64 * 1024


@dataclass
class Options:
    """Options of the http probe (each becomes a CLI option)."""

    address: str | None = field(default=None, metadata={
        "help": "Connect to this IP address instead of resolving the URL's host (Host header and SNI unchanged)."})
    resolver: str | None = field(default=None, metadata={
        "help": "Resolver IP[:PORT] (UDP, each query recorded) for every host not pinned by --address: "
                "the URL's and redirect targets; default: the system resolver."})
    timeout: float = field(default=15.0, metadata={
        "help": "Seconds for the whole measurement: every redirect, the headers and the body."})
    max_redirects: int = field(default=10, metadata={"help": "Redirects to follow before http_too_many_redirects."})
    max_body_bytes: int = field(default=1024 * 1024, metadata={
        "help": "Stop reading the final body after this many bytes (body_truncated: true)."})
    body_head_kib: int = field(default=4, metadata={"help": "KiB of the final body kept as text in body_head."})


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host; ``InvalidTarget`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidTarget(f"expected an http:// or https:// URL with a host, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidTarget(f"bad port in {url!r}: {exc}") from None
    return url


def _check_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise InvalidTarget(f"--address must be an IP literal, got {address!r}") from None


def _headers(response: Any) -> list[list[str]]:
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.headers.raw]


def _peer(response: Any) -> str | None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    return format_host_port(peer[0], peer[1]) if peer else None


def _charset(response: Any) -> str:
    name = response.charset_encoding or "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


def extract_title(body: bytes, charset: str = "utf-8") -> str | None:
    """The text of the first ``<title>`` in ``body``, unescaped, whitespace collapsed."""
    m = _TITLE.search(body)
    if m is None:
        return None
    text = html.unescape(m.group(1).decode(charset, errors="replace"))
    return " ".join(text.split())[:512]


class _Final:
    """The final response as it is being read (kept when a failure interrupts it)."""

    def __init__(self, response: Any, head_bytes: int) -> None:
        self.status = response.status_code
        self.headers = _headers(response)
        self.charset = _charset(response)
        self.head_bytes = head_bytes
        self.body = bytearray()
        self.truncated = False

    def fields(self) -> dict[str, Any]:
        body = bytes(self.body)
        return {
            "status": self.status, "headers": self.headers, "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(), "body_truncated": self.truncated,
            "body_head": body[: self.head_bytes].decode(self.charset, errors="replace"),
            "title": extract_title(body, self.charset),
        }


class _Inflater:
    """Bounded gzip/deflate decoding: never inflates more than asked for.

    httpx decodes a whole network chunk at once, so a small compressed chunk
    could become tens of MB before any cap applies; here the cap bounds memory.
    Other or stacked encodings are kept as received.
    """

    def __init__(self, content_encoding: str | None) -> None:
        enc = (content_encoding or "").strip().lower()
        self.active = enc in ("gzip", "x-gzip", "deflate")
        self._gzip = enc != "deflate"
        self._z: Any = None
        self._pending = b""

    def feed(self, data: bytes) -> None:
        """Queue received bytes."""
        self._pending += data

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes from what is queued."""
        if not self.active:
            out, self._pending = self._pending[:limit], self._pending[limit:]
            return out
        if self._z is None:
            if not self._pending:
                return b""
            # "deflate" is zlib-wrapped by the RFC but raw in some servers: look at the header
            wbits = 16 + zlib.MAX_WBITS if self._gzip else (
                zlib.MAX_WBITS if self._pending[0] & 0x0F == 8 else -zlib.MAX_WBITS)
            self._z = zlib.decompressobj(wbits)
        out = self._z.decompress(self._pending, limit)
        self._pending = self._z.unconsumed_tail
        return out


async def _read_body(response: Any, sink: bytearray, cap: int) -> bool:
    """Append up to ``cap`` decoded body bytes to ``sink``; True when the cap cut the body short."""
    import httpx

    try:
        body = response.content  # already read and decoded by a buffering transport (MockTransport)
    except httpx.ResponseNotRead:
        pass
    else:
        sink += body[:cap]
        return len(body) > cap
    inflater = _Inflater(response.headers.get("content-encoding"))
    async for raw in response.aiter_raw():
        inflater.feed(raw)
        while piece := inflater.take(cap - len(sink) + 1):
            if len(sink) + len(piece) > cap:
                sink += piece[: cap - len(sink)]
                return True
            sink += piece
    return False


#: how a round trip finds the address of a host: an IP literal, or raise ``ResolveFailed``
Resolve = Callable[[str], Awaitable[str]]


class ResolveFailed(Exception):
    """A host of the round trip (the URL's or a redirect's) could not be resolved."""

    def __init__(self, host: str, failure: str) -> None:
        super().__init__(f"{host}: {failure}")
        self.host = host
        self.failure = failure


def dns_resolve(net: Net, rec: Recorder, resolver: str, *, timeout: float, hold_window: float) -> Resolve:
    """A ``Resolve`` through ``resolver`` (UDP, our dns probe's query, each query recorded).

    Asks A, then AAAA when A gave no address, and uses the first address of the
    first valid response: what a stub resolver would use. Each host is asked
    once per round trip.
    """
    from censorscope.probes import dns

    known: dict[str, str] = {}

    async def resolve(host: str) -> str:
        if _is_ip(host):
            return host
        if host not in known:
            failure = None
            for qtype in ("A", "AAAA"):
                obs = await dns.query(host, qtype, resolver, transport="udp", net=net, rec=rec,
                                      hold_window=hold_window, timeout=timeout)
                if obs.fields.get("addresses"):
                    known[host] = obs.fields["addresses"][0]
                    break
                failure = failure or obs.failure or DNS_NO_ANSWER
            else:
                raise ResolveFailed(host, failure or DNS_NO_ANSWER)
        return known[host]

    return resolve


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve_failure(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    for _ in range(8):  # httpx/httpcore may wrap what the backend raised
        if seen is None:
            return None
        if isinstance(seen, ResolveFailed):
            return seen.failure
        seen = seen.__cause__ or seen.__context__
    return None


async def round_trip(
    net: Net, rec: Recorder, url: str, *, address: str | None = None, resolve: Resolve | None = None,
    timeout: float = 15.0, max_redirects: int = 10, max_body_bytes: int = 1024 * 1024,
    body_head_bytes: int = 4096, parent_id: int | None = None,
) -> Observation:
    """GET ``url`` (following redirects by hand) and record one ``http_round_trip``.

    ``address`` pins the URL's host to that IP; other hosts (and the URL's
    without a pin) go through ``resolve``, or the system resolver without it.
    """
    import httpx  # heavy: only when HTTP is measured

    step = rec.begin("http_round_trip", parent_id, url=url, method="GET",
                     request_headers=[list(h) for h in REQUEST_HEADERS])
    hops: list[dict[str, Any]] = []
    final: _Final | None = None
    parts = urlsplit(url)
    host = httpx.URL(url).raw_host.decode("ascii")  # as the connection layer names it (IDNA)
    pinned = format_host_port(address, parts.port or _PORTS[parts.scheme]) if address else None

    async def address_of(name: str) -> str:
        if address and name == host:
            return address
        return await resolve(name) if resolve else name  # a name: getaddrinfo decides

    # ALPN as httpcore sets it for HTTP/1.1 (this also selects Net's cached context)
    transport = net.http_transport(ssl_context=net.tls_context(verify=True, alpn=["http/1.1"]),
                                   resolve=address_of if address or resolve else None)
    client = httpx.AsyncClient(transport=transport, headers=REQUEST_HEADERS, follow_redirects=False,
                               timeout=httpx.Timeout(timeout), trust_env=False)

    def partial() -> dict[str, Any]:
        # without a pin, the address is the one the first request actually reached
        reached = pinned or (hops[0]["address"] if hops else None)
        return {"address": reached, "hops": hops, **(final.fields() if final else {})}

    try:
        async with client, asyncio.timeout(timeout):
            current = url
            while True:
                response = await client.send(client.build_request("GET", current), stream=True)
                try:
                    location = response.headers.get("location")
                    hops.append({"url": current, "status": response.status_code, "headers": _headers(response),
                                 "location": location, "address": _peer(response)})
                    if response.status_code in _REDIRECTS and location is not None:
                        await _read_body(response, bytearray(), _REDIRECT_BODY_CAP)
                        if len(hops) > max_redirects:
                            return step.fail(HTTP_TOO_MANY_REDIRECTS, **partial())
                        current = urljoin(current, location)
                        continue
                    final = _Final(response, body_head_bytes)
                    final.truncated = await _read_body(response, final.body, max_body_bytes)
                    return step.ok(**partial())
                finally:
                    await response.aclose()
    except Exception as exc:  # noqa: BLE001 - every network failure is data
        return step.fail(_resolve_failure(exc) or exc, **partial())


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """GET ``target`` and return its single ``http_round_trip`` observation."""
    url = check_url(target)
    address = _check_address(options.address) if options.address else None
    tcp.check_timeout(options.timeout)
    if options.max_redirects < 0 or options.max_body_bytes < 0 or options.body_head_kib < 0:
        raise ConfigError("--max-redirects, --max-body-bytes and --body-head-kib must be >= 0")
    rec = Recorder(net.clock)
    resolve = dns_resolve(net, rec, options.resolver, timeout=options.timeout, hold_window=0.0) if (
        options.resolver) else None
    await round_trip(net, rec, url, address=address, resolve=resolve, timeout=options.timeout,
                     max_redirects=options.max_redirects, max_body_bytes=options.max_body_bytes,
                     body_head_bytes=options.body_head_kib * 1024)
    return rec.observations


def target_from_url(url: str) -> str | None:
    """Campaign input -> target: any http(s) URL is measured as itself."""
    try:
        return check_url(url)
    except InvalidTarget:
        return None
