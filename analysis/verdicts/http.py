"""HTTP rules: block pages, resets, drops and content differences.

* ``http.blockpage:<id>``: a response (or a redirect in the chain) matches a
  known block-page fingerprint (``data/blockpages.json``): confirmed, with or
  without a control (OONI's "confirmed").
* ``http.reset``: the request was answered by a reset (``connection_reset``,
  or ``eof_error`` with lower confidence) while the control fetched the page.
  The GFW resets on Host/keyword (CENSORSHIP-FACTS.md, WWW 2021).
* ``http.drop``: the request got no response (``generic_timeout_error``) after
  the connection was established, while the control fetched the page.
* ``http.diff``: the page differs from the control's in every way OONI checks
  (status code, body length ratio <= 0.7, title words, uncommon headers). A
  dynamic page differs in length but keeps its status and title: ``ok``.
  Length alone is never enough; known look-alikes (Cloudflare challenges,
  default and parked pages) make a difference ``inconclusive``.
"""

from __future__ import annotations

import re
from typing import Any

from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import Context
from censorscope.analysis.verdicts.core import (
    CONFIRMED,
    MODERATE,
    STRONG,
    WEAK,
    Measurement,
    Verdict,
    address_of,
    blocked,
    down,
    inconclusive,
    ok,
)
from censorscope.analysis.verdicts.fingerprints import match_blockpage, match_not_blockpage

#: OONI web_connectivity's body-length threshold (CENSORSHIP-FACTS.md, "HTTP diff")
BODY_RATIO = 0.7

# Headers every server sends: sharing them says nothing (OONI compares the uncommon ones).
_COMMON_HEADERS = frozenset({
    "date", "content-type", "content-length", "server", "connection", "cache-control", "expires", "etag",
    "last-modified", "vary", "accept-ranges", "transfer-encoding", "set-cookie", "location", "age", "pragma",
    "content-encoding", "keep-alive", "x-cache", "via", "strict-transport-security", "alt-svc",
})

_FAILURES = {
    "connection_reset": ("http.reset", STRONG),
    "eof_error": ("http.reset", MODERATE),
    "generic_timeout_error": ("http.drop", 0.75),
}


def blockpage_verdict(rt: dict[str, Any]) -> Verdict | None:
    """``http.blockpage:<id>`` when the round trip matches a known block page."""
    found = match_blockpage(rt)
    if not found:
        return None
    fp, where = found
    return blocked(f"http.blockpage:{fp.id}", CONFIRMED, E.sentence(
        f"{E.name(rt)} got status {rt.get('status')}; its {where} matches the block page {fp.id} "
        f"({fp.who}; source: {fp.source.split(';')[0]})"), endpoint=address_of(rt))


def _title_words(title: str | None) -> set[str]:
    return {w.lower() for w in re.findall(r"\w+", title or "") if len(w) >= 5}


def _uncommon_headers(rt: dict[str, Any]) -> set[str]:
    hdrs = rt.get("headers") or []
    names = hdrs.keys() if isinstance(hdrs, dict) else [h[0] for h in hdrs if isinstance(h, list | tuple) and h]
    return {str(n).lower() for n in names} - _COMMON_HEADERS


def compare(rt: dict[str, Any], ctl: dict[str, Any]) -> tuple[Verdict, bool]:
    """Compare two successful round trips. Returns (verdict, consistent?)."""
    if rt.get("body_sha256") and rt.get("body_sha256") == ctl.get("body_sha256"):
        return ok(E.sentence(f"{E.name(rt)} got the same body as the control (sha256 {str(rt['body_sha256'])[:16]}…)"),
                  0.95), True
    status_match = rt.get("status") == ctl.get("status")
    a, b = int(rt.get("body_length") or 0), int(ctl.get("body_length") or 0)
    ratio = min(a, b) / max(a, b) if max(a, b) else 1.0
    body_match = ratio > BODY_RATIO
    t1, t2 = _title_words(rt.get("title")), _title_words(ctl.get("title"))
    title_match = bool(t1 & t2) if (t1 or t2) else None
    h1, h2 = _uncommon_headers(rt), _uncommon_headers(ctl)
    headers_match = bool(h1 & h2) if (h1 or h2) else None
    facts = (f"status {rt.get('status')} vs control {ctl.get('status')}, body {a} vs {b} bytes (ratio {ratio:.2f}), "
             f"title {rt.get('title')!r} vs {ctl.get('title')!r}")
    head = f"{E.name(rt)}: {facts}"
    if status_match and (body_match or title_match):
        why = "body length within the 0.7 ratio" if body_match else "same title words (a dynamic page)"
        return ok(E.sentence(head, f"consistent with the control: same status, {why}"), 0.85 if body_match else 0.75), True
    if status_match and headers_match:
        return ok(E.sentence(head, "same status and uncommon headers as the control"), 0.6), True
    look_alike = match_not_blockpage(rt)
    if look_alike:
        return inconclusive(E.sentence(head, f"the page is a known look-alike ({look_alike.id}: {look_alike.who}), "
                                       "not a block page"), WEAK), False
    if not status_match and not body_match and not title_match and not headers_match:
        return blocked("http.diff", 0.65, E.sentence(head, "status, length, title and headers all differ from "
                                                     "the control"), endpoint=address_of(rt)), False
    return inconclusive(E.sentence(head, "partly different from the control; not enough for http.diff"), 0.45), False


def control_round_trips(m: Measurement, rt: dict[str, Any]) -> list[dict[str, Any]]:
    """The control's round trips for the same URL (any, when URLs differ)."""
    same = [c for c in m.control_ops("http_round_trip") if c.get("url") == rt.get("url")]
    return same or m.control_ops("http_round_trip")


def judge_round_trip(m: Measurement, rt: dict[str, Any]) -> Verdict:
    """Judge one ``http_round_trip``: fingerprints first, then failures and differences."""
    bp = blockpage_verdict(rt)
    if bp:
        return bp
    if m.control_state != "present":
        return inconclusive(E.sentence(E.outcome(rt), m.control_note()), 0.2 if not rt.get("failure") else 0.3)
    ctl = control_round_trips(m, rt)
    if not ctl:
        return inconclusive(E.sentence(E.outcome(rt), "the control made no HTTP request"))
    c_ok = [c for c in ctl if not c.get("failure")]
    failure = rt.get("failure")
    if failure:
        if not c_ok:
            return down(E.sentence(E.outcome(rt), E.outcome(ctl[0], control=True)),
                        0.75 if failure == ctl[0].get("failure") else 0.6)
        if failure in _FAILURES:
            method, conf = _FAILURES[failure]
            return blocked(method, conf, E.sentence(E.outcome(rt), E.outcome(c_ok[0], control=True)),
                           endpoint=address_of(rt) or _parent_address(m, rt), at=rt.get("t0"))
        return inconclusive(E.sentence(E.outcome(rt), E.outcome(c_ok[0], control=True),
                                       f"{failure} is not a known censorship signature"), WEAK)
    if not c_ok:
        return inconclusive(E.sentence(E.outcome(rt), E.outcome(ctl[0], control=True)), WEAK)
    status = int(rt.get("status") or 0)
    c_status = int(c_ok[0].get("status") or 0)
    if status >= 500 and c_status >= 500:
        return down(E.sentence(f"{E.name(rt)} got status {status}", f"the control got {c_status}"), 0.6)
    return compare(rt, c_ok[0])[0]


def _parent_address(m: Measurement, o: dict[str, Any]) -> str | None:
    for a in m.ancestors(o):
        if address_of(a):
            return address_of(a)
    return None


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``http``: the round trip decides; failed connects are judged as TCP."""
    rts = m.ops("http_round_trip")
    if not rts:
        conns = [c for c in m.ops("connect") if c.get("failure")]
        if conns:
            from censorscope.analysis.verdicts.tcp import judge_connect

            return judge_connect(m, conns[0])
        return inconclusive("The measurement has no http_round_trip observation.", 0.0)
    return judge_round_trip(m, rts[-1])
