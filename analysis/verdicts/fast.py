"""Shape-specialised fast paths: the commonest measurement, judged without the general machinery.

Most measurements of a campaign show nothing: every step worked and agrees
with the control. For a ``web`` measurement of that shape (DNS lookups that
succeeded with an answer shared with the control's, connections and TLS
handshakes that succeeded, the certificate verified for the name and the
control made the same handshake, no HTTP round trip) the general rules
(:mod:`censorscope.analysis.verdicts.web`) end with the DNS stage's ``ok``
verdict. :func:`web_ok` checks that shape with a few lookups on the record
and builds that one verdict, with the same evidence text; anything unusual
(a failure anywhere, a race, a fingerprint, a bogon, annotations that change
the DNS rules, a control lookup that timed out, other operations) returns
None and the general rules judge the measurement.

``ENABLED`` switches the fast paths off (tests compare both ways); the environment
variable ``CENSORSCOPE_VERDICT_FAST_PATHS=0`` sets it False at import (to compare
speeds in a benchmark's worker processes).
"""

from __future__ import annotations

import os

from censorscope.analysis.verdicts import dns
from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import verified_for_name
from censorscope.analysis.verdicts.core import Measurement, Verdict, ok
from censorscope.analysis.verdicts.fingerprints import is_bogon, match_dns

#: False: every measurement goes through the general rules
ENABLED = os.environ.get("CENSORSCOPE_VERDICT_FAST_PATHS", "1") != "0"

#: the operations a measurement of the fast shape may contain
_WEB_OK_OPS = frozenset(("dns_query", "connect", "tls_handshake"))


def web_ok(m: Measurement) -> Verdict | None:
    """The ``ok`` verdict :func:`censorscope.analysis.verdicts.web.rule` gives ``m``, when ``m``
    has the all-consistent shape (module docstring); None when it does not (judge it generally)."""
    ops = m._ops
    qs = ops.get("dns_query")
    if not qs or not _WEB_OK_OPS.issuperset(ops) or m.control_state != "present":
        return None
    if m.annotations and dns._to_no_dns_server(m):
        return None
    # The conditions are all required (their order is free): the cheap ones that most unusual
    # measurements fail (a failed connect or handshake, a failed lookup, a race) come first.
    conns = ops.get("connect")
    if conns and all(c.get("failure") for c in conns):
        return None
    for q in qs:
        if q.get("failure"):
            return None
    host = m.host
    hss = [h for h in ops.get("tls_handshake") or () if h.get("server_name") in (host, None)]
    if hss and not any(not h.get("failure") and verified_for_name(h) for h in hss):
        return None
    rss = []
    for q in qs:
        rs = dns.responses(q)
        if len(rs) > 1 and len({(r.get("rcode"), frozenset(r.get("addresses") or [])) for r in rs}) > 1:
            return None  # a race of differing answers
        rss.append(rs)
    control = m.control_ops_view  # indexes the control once
    if hss:
        # control_handshakes(m, h) is not empty exactly when a control handshake has h's SNI
        c_snis = [c.get("server_name") for c in control("tls_handshake")]
        if not any(not h.get("failure") and verified_for_name(h) and h.get("server_name") in c_snis for h in hss):
            return None
    if control("resolve"):
        return None  # the control's system lookups count as its DNS answers: the general rules decide
    c_queries = control("dns_query")
    first: tuple[dict, list[str]] | None = None
    for q, rs in zip(qs, rss, strict=True):
        # dns.control_queries: the control's lookups of the same name, same type first
        name = str(q.get("query_name") or m.host or "").lower()
        same_name = [c for c in c_queries if str(c.get("query_name") or "").lower() == name]
        qtype = q.get("query_type")
        cqs = [c for c in same_name if c.get("query_type") == qtype] or same_name
        if not cqs:
            return None
        control_addrs: set[str] = set()
        c_ok = False
        for c in cqs:
            failure = c.get("failure")
            if failure == dns.TIMEOUT:
                return None  # GFWatch's only-inside test applies
            c_rs = dns.responses(c)
            for r in c_rs:
                control_addrs.update(r.get("addresses") or ())
            if not failure and dns.first_addresses(c, c_rs):
                c_ok = True
        if not c_ok:
            return None
        for r in rs:
            values = (list(r.get("addresses") or []) + dns._cnames(r)) if r.get("answers") else (
                r.get("addresses") or ())
            for value in values:
                if type(value) is not str:
                    return None
                # for a str, match_dns cannot raise: asking the set first changes nothing
                if value not in control_addrs and match_dns(value) is not None:
                    return None  # a known block-page or forged answer
        addrs = dns.first_addresses(q, rs)
        if not addrs:
            return None
        for a in addrs:
            if type(a) is not str or is_bogon(a):
                return None
        if control_addrs.isdisjoint(addrs):
            return None  # differing answers: the CDN / consistency checks decide
        if first is None:
            first = (q, addrs)
    q, addrs = first  # type: ignore[misc]  # qs is not empty
    # dns.judge's "shared with the control" verdict; dns.pick keeps the first of equal ones
    return ok(E.sentence(f"{E.name(q)} answered {E.addresses(addrs)}, shared with the control"), 0.9)
