"""Known censorship fingerprints: block pages (HTTP) and DNS answers.

The data lives in ``censorscope/data/blockpages.json`` and
``censorscope/data/dns_fingerprints.json`` (each entry cites its source).
DNS fingerprints are data for matching answers only: nothing here, or
anywhere in censorscope, connects to those addresses.

Also here: bogon recognition for DNS answers. Documentation ranges
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are
deliberately *not* bogons: the lab uses them for real servers.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Fingerprint:
    """One entry of a fingerprint file."""

    id: str
    kind: str  # "blockpage" | "not_blockpage" | DNS: "blockpage" | "forged"
    who: str  # country code or product
    match: dict[str, Any]
    source: str


def _load(name: str) -> dict[str, Any]:
    return json.loads((resources.files("censorscope.data") / name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def http_fingerprints() -> tuple[tuple[Fingerprint, ...], tuple[Fingerprint, ...]]:
    """(block pages, known not-block-pages) from ``blockpages.json``."""
    doc = _load("blockpages.json")

    def build(e: dict[str, Any], kind: str) -> Fingerprint:
        return Fingerprint(e["id"], kind, e.get("country") or e.get("product") or "", e["match"], e["source"])

    return (tuple(build(e, "blockpage") for e in doc["blockpages"]),
            tuple(build(e, "not_blockpage") for e in doc.get("not_blockpages", [])))


@lru_cache(maxsize=1)
def dns_fingerprints() -> tuple[Fingerprint, ...]:
    """Known block-page and forged DNS answers from ``dns_fingerprints.json``."""
    doc = _load("dns_fingerprints.json")
    return tuple(Fingerprint(e["id"], e["kind"], e.get("country") or e.get("product") or "", e["match"], e["source"])
                 for e in doc["fingerprints"])


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# --- HTTP -----------------------------------------------------------------
def _headers(headers: Any) -> list[tuple[str, str]]:
    if isinstance(headers, _Normalised):
        return headers.pairs
    if isinstance(headers, dict):
        return [(str(k).lower(), str(v)) for k, v in headers.items()]
    out = []
    for h in headers or []:
        if isinstance(h, list | tuple) and len(h) == 2:
            out.append((str(h[0]).lower(), str(h[1])))
    return out


class _Normalised:
    """Headers already lower-cased into (name, value) pairs: matched many times, normalised once."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs


def _header_matches(spec: dict[str, Any], headers: list[tuple[str, str]]) -> bool:
    name = spec["name"].lower()
    for k, v in headers:
        if k != name:
            continue
        if "prefix" in spec and v.startswith(spec["prefix"]):
            return True
        if "contains" in spec and spec["contains"] in v:
            return True
        if "equals" in spec and v == spec["equals"]:
            return True
    return False


def page_matches(fp: Fingerprint, *, body: str = "", headers: Any = (), locations: list[str] = (),  # type: ignore[assignment]
                 status: int | None = None) -> bool:
    """True when every criterion of ``fp.match`` holds for this response."""
    m = fp.match
    hdrs = _headers(headers)
    checks = []
    if "body_contains" in m:
        checks.append(any(s in body for s in m["body_contains"]))
    if "body_regex" in m:
        checks.append(bool(_regex(m["body_regex"]).search(body)))
    if "header" in m:
        checks.append(_header_matches(m["header"], hdrs))
    if "location_contains" in m:
        checks.append(any(s in loc for s in m["location_contains"] for loc in locations))
    if "status" in m:
        checks.append(status == m["status"])
    return bool(checks) and all(checks)


def _response_views(rt: dict[str, Any]) -> list[dict[str, Any]]:
    """Every response of an ``http_round_trip``: each hop, then the final response."""
    views = []
    for hop in rt.get("hops") or []:
        if isinstance(hop, dict):
            loc = hop.get("location") or dict(_headers(hop.get("headers"))).get("location")
            views.append({"body": "", "headers": _Normalised(_headers(hop.get("headers"))),
                          "locations": [loc] if loc else [],
                          "status": hop.get("status"),
                          "where": f"response to {hop.get('url')}" + (f" (redirect to {loc})" if loc else "")})
    final_loc = dict(_headers(rt.get("headers"))).get("location")
    views.append({"body": rt.get("body_head") or "", "headers": _Normalised(_headers(rt.get("headers"))),
                  "locations": [final_loc] if final_loc else [], "status": rt.get("status"), "where": "response"})
    return views


@lru_cache(maxsize=1)
def _body_prefilter() -> re.Pattern[str]:
    """One case-insensitive pattern matching every body a body criterion could match (a superset):
    most pages match no fingerprint, and one search rules them all out."""
    parts = []
    for fp in http_fingerprints()[0]:
        parts += [re.escape(x) for x in fp.match.get("body_contains", ())]
        if "body_regex" in fp.match:
            parts.append(f"(?:{re.sub(r'^[(][?][a-z]+[)]', '', fp.match['body_regex'])})")
    return re.compile("|".join(parts) or "(?!)", re.IGNORECASE | re.DOTALL)


def match_blockpage(rt: dict[str, Any]) -> tuple[Fingerprint, str] | None:
    """The first block-page fingerprint an ``http_round_trip`` matches, with where it matched."""
    pages, _ = http_fingerprints()
    for view in _response_views(rt):
        if not (view["body"] and _body_prefilter().search(view["body"])):
            view["body"] = ""  # no body criterion can match: only header/location/status ones remain
        for fp in pages:
            if page_matches(fp, body=view["body"], headers=view["headers"], locations=view["locations"],
                            status=view["status"]):
                return fp, view["where"]
    return None


def match_not_blockpage(rt: dict[str, Any]) -> Fingerprint | None:
    """A known false-positive page (CAPTCHA, default page, parking) the final response matches."""
    _, fps = http_fingerprints()
    body = rt.get("body_head") or ""
    for fp in fps:
        if page_matches(fp, body=body, headers=rt.get("headers"), status=rt.get("status")):
            return fp
    return None


# --- DNS ------------------------------------------------------------------
@lru_cache(maxsize=4096)
def match_dns(value: str) -> Fingerprint | None:
    """The DNS fingerprint an answer (address or CNAME target) matches, if any."""
    value = value.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = None
    for fp in dns_fingerprints():
        m = fp.match
        if ip is not None:
            if str(ip) in m.get("addresses", ()):
                return fp
            if any(ip.version == ipaddress.ip_network(n).version and ip in ipaddress.ip_network(n)
                   for n in m.get("networks", ())):
                return fp
        elif value in m.get("names", ()):
            return fp
    return None


_BOGONS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
))


#: the bogon networks as (version, first, last) integer ranges: one parse per distinct address, then
#: integer comparisons (no network objects per check)
_BOGON_RANGES = tuple((n.version, int(n.network_address), int(n.broadcast_address)) for n in _BOGONS)


@lru_cache(maxsize=65536)
def is_bogon(address: str) -> bool:
    """True for addresses no public server uses: unspecified, loopback, private, CGN,
    link-local, multicast, reserved. Documentation ranges are not bogons here."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    version, value = ip.version, int(ip)
    return any(v == version and lo <= value <= hi for v, lo, hi in _BOGON_RANGES)
