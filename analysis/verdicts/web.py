"""The ``web`` probe: DNS, then TCP, TLS and HTTP, judged in that order.

The first stage that shows a censorship signature decides; a stage that
fails the same way for the control makes the site ``down``. DNS answers that
differ from the control's are checked against what the same measurement saw
at those addresses (certificate, content) before anything is concluded: a
valid certificate or the control's content means a CDN or geo-DNS answer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from censorscope.analysis.verdicts import dns
from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import Context, leaf_sha256, verified_for_name
from censorscope.analysis.verdicts.core import Measurement, Verdict, address_of, inconclusive, ip_of, ok
from censorscope.analysis.verdicts.http import (
    blockpage_verdict,
    compare,
    control_round_trips,
    judge_round_trip,
)
from censorscope.analysis.verdicts.tcp import judge_connect
from censorscope.analysis.verdicts.tls import control_handshakes, judge_handshake


def _children(m: Measurement, parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in m.observations if m.descends_from(o, parent)]


def address_checks(m: Measurement) -> dns.Checks:
    """For each address the measurement connected to: is it consistent with the name?"""
    checks: dns.Checks = {}
    c_leaves = {leaf_sha256(c) for c in m.control_ops_view("tls_handshake") if not c.get("failure")} - {None}
    for conn in m.ops_view("connect"):
        ip = ip_of(address_of(conn))
        if not ip or conn.get("failure") or ip in checks:
            continue
        for o in _children(m, conn):
            if o.get("operation") == "tls_handshake" and not o.get("failure"):
                if verified_for_name(o):
                    checks[ip] = (True, f"{E.name(o)} got a certificate valid for {o.get('server_name')}")
                elif leaf_sha256(o) in c_leaves:
                    checks[ip] = (True, f"{E.name(o)} got the control's certificate")
                elif c_leaves:
                    checks[ip] = (False, f"{E.name(o)} got a certificate that neither verifies nor matches the control's")
                break
            if o.get("operation") == "http_round_trip" and not o.get("failure"):
                if blockpage_verdict(o):
                    checks[ip] = (False, f"{E.name(o)} returned a known block page")
                    break
                ctl = [c for c in control_round_trips(m, o) if not c.get("failure")]
                if ctl:
                    consistent = compare(o, ctl[0])[1]
                    checks[ip] = (consistent, f"{E.name(o)} content {'matches' if consistent else 'differs from'} "
                                              "the control's")
                break
    return checks


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Judge a ``web`` measurement stage by stage (see the module docstring)."""
    rts = m.ops_view("http_round_trip")
    for rt in rts:
        bp = blockpage_verdict(rt)
        if bp:
            return bp
    made: list[dns.Checks] = []

    def checks() -> dns.Checks:
        # only a DNS answer that differs from the control's needs them: made on first use, once
        if not made:
            made.append(address_checks(m))
        return made[0]

    qs = m.ops_view("dns_query") + m.ops_view("resolve")
    dns_vs = [dns.judge(m, q, ctx, checks) for q in qs]
    dns_v = dns.pick(dns_vs) if dns_vs else None
    if dns_v and dns_v.verdict == "blocked":
        return dns_v
    if m.control_state != "present":
        return inconclusive(E.sentence(_summary(m), m.control_note()), 0.2)
    if dns_v and dns_v.verdict == "down":
        return dns_v
    conns = m.ops_view("connect")
    if dns_v and not (conns or rts):
        return dns_v  # DNS failed and nothing else was tried
    dns_doubt = dns_v is not None and dns_v.verdict == "inconclusive"

    if conns and all(c.get("failure") for c in conns):
        vs = [judge_connect(m, c, any_address=True) for c in conns]
        v = _spanning(max(vs, key=lambda x: (x.verdict == "blocked", x.confidence)), vs)
        if dns_doubt and v.verdict == "blocked":
            return inconclusive(E.sentence(v.evidence, "but the DNS answers were already doubtful: "
                                           + dns_v.evidence), 0.5)  # type: ignore[union-attr]
        return v
    host = m.host
    hss = [h for h in m.ops_view("tls_handshake") if h.get("server_name") in (host, None)]
    if hss and all(h.get("failure") for h in hss):
        vs = [judge_handshake(m, h) for h in hss]
        return _spanning(vs[-1], vs)
    # The control is present here, so judge_handshake calls a successful handshake whose certificate
    # verifies for its name, with a control handshake to compare, ok; one such ok outweighs any
    # interception verdict, so the handshakes need judging only when there is none.
    if not any(not h.get("failure") and verified_for_name(h) and control_handshakes(m, h) for h in hss):
        bad_cert = [judge_handshake(m, h) for h in hss if not h.get("failure")]
        mitm = [v for v in bad_cert if v.verdict == "blocked"]
        if mitm and not any(v.verdict == "ok" for v in bad_cert):
            return mitm[0]
    if rts:
        v = judge_round_trip(m, rts[-1])
        if v.verdict != "ok":
            return v
        if dns_doubt:
            return dns_v  # type: ignore[return-value]
        return ok(E.sentence(v.evidence.rstrip("."), dns_v.evidence if dns_v else ""), v.confidence)
    if dns_v:
        return dns_v
    return inconclusive(E.sentence(_summary(m), "nothing to compare"), 0.2)


def _spanning(v: Verdict, vs: list[Verdict]) -> Verdict:
    """``v`` covering every endpoint (and the earliest time) of the verdicts with its method."""
    same = [x for x in vs if x.verdict == v.verdict and x.method == v.method and x.endpoint]
    if v.verdict != "blocked" or not same:
        return v
    times = [x.at for x in same if x.at is not None]
    eps = tuple(dict.fromkeys([*v.endpoints, *(e for x in same if (e := x.endpoint))]))
    at = min(times) if times else v.at
    if eps == v.endpoints and at == v.at and type(at) is type(v.at):
        return v  # one endpoint, one time: already what replace() would make
    return replace(v, endpoints=eps, at=at)


def _summary(m: Measurement) -> str:
    failed = [o for o in m.observations if o.get("failure")]
    if failed:
        return E.outcome(failed[0])
    return f"{len(m.observations)} operations succeeded"
