"""DNS rules: injection, lying resolvers, bogons, NXDOMAIN, sinkholes.

Signatures (docs/verdicts.md, sources in CENSORSHIP-FACTS.md):

* ``dns.blockpage``: an answer is a known block-page address or CNAME
  (``data/dns_fingerprints.json``): confirmed without a control.
* ``dns.injection``: an answer is a known forged address; or two or more
  responses with different answers arrived for one query (the injector's
  forged answer races the real one, GFWatch); or a resolver address that
  gives the control no answer answered inside the censored network (an
  on-path injector answering for an address that runs no DNS server).
* ``dns.bogon``: answers are unspecified/loopback/private addresses while the
  control's are not.
* ``dns.nxdomain`` / ``dns.servfail`` / ``dns.refused`` / ``dns.timeout``: the
  resolver failed for this name while the control resolved it (the last three
  also need the same resolver to answer other names in the batch).
* ``dns.inconsistent``: answers share no address (or ASN) with the control's
  *and* the addresses fail TLS/content consistency in the same measurement.

Differing answers alone are never blocking: CDNs and geo-DNS give different
legitimate answers (the trap); they are checked against TLS certificates and
content first, else the verdict is ``inconclusive``.
"""

from __future__ import annotations

from collections.abc import Callable
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
    blocked,
    down,
    inconclusive,
    ok,
)
from censorscope.analysis.verdicts.fingerprints import is_bogon, match_dns

NXDOMAIN = "dns_nxdomain_error"
SERVFAIL = "dns_servfail_error"
REFUSED = "dns_refused_error"
NO_ANSWER = "dns_no_answer"
TIMEOUT = "generic_timeout_error"

#: per-address consistency found by a composed probe (web): ip -> (consistent?, why)
Checks = dict[str, tuple[bool, str]]
#: what ``judge`` accepts: the checks, or a function making them (called only if an answer needs them)
ChecksArg = Checks | Callable[[], Checks] | None


def responses(q: dict[str, Any]) -> list[dict[str, Any]]:
    """Every response of a ``dns_query`` (or the one implied by a ``resolve``)."""
    if q.get("operation") == "resolve":
        return [{"rcode": "NOERROR" if not q.get("failure") else None, "addresses": q.get("addresses") or [],
                 "answers": [], "source": "system"}]
    # responses that do not answer this query (unparseable, wrong id or question) are noise, not evidence
    out = []
    for r in q.get("responses") or ():
        if type(r) is dict or isinstance(r, dict):
            if not (r.get("parse_error") or r.get("id_mismatch") or r.get("question_mismatch")):
                out.append(r)
    return out


def first_addresses(q: dict[str, Any], rs: list[dict[str, Any]] | None = None) -> list[str]:
    """Addresses of the first response (``addresses`` at top level); ``rs``: ``responses(q)``
    when the caller has them already."""
    addrs = q.get("addresses")
    if addrs:
        return list(addrs)
    if rs is None:
        rs = responses(q)
    return list(rs[0].get("addresses") or []) if rs else []


def _cnames(r: dict[str, Any]) -> list[str]:
    return [str(a.get("data")) for a in r.get("answers") or [] if isinstance(a, dict) and a.get("type") == "CNAME"]


def _asns(r: dict[str, Any]) -> set[str]:
    return {str(a["asn"]) for a in r.get("answers") or [] if isinstance(a, dict) and a.get("asn")}


def control_queries(m: Measurement, q: dict[str, Any]) -> list[dict[str, Any]]:
    """The control's lookups of the same name (same type first)."""
    name = str(q.get("query_name") or m.host or "").lower()
    qs = [c for op in ("dns_query", "resolve") for c in m.control_ops_view(op)
          if str(c.get("query_name") or "").lower() == name]
    qtype = q.get("query_type")
    same_type = [c for c in qs if c.get("query_type") == qtype]
    return same_type or qs


def _describe_response(r: dict[str, Any]) -> str:
    addrs = r.get("addresses") or []
    what = E.addresses(addrs) if addrs else (r.get("rcode") or "no answer")
    src = f" from {r['source']}" if r.get("source") else ""
    t = f" at {float(r['t']):.3f} s" if isinstance(r.get("t"), int | float) else ""
    return f"{what}{src}{t}"


def _fingerprint_verdict(m: Measurement, q: dict[str, Any], control_addrs: set[str],
                         rs: list[dict[str, Any]] | None = None) -> Verdict | None:
    for r in responses(q) if rs is None else rs:
        answers = r.get("answers")
        for value in (list(r.get("addresses") or []) + _cnames(r)) if answers else (r.get("addresses") or ()):
            fp = match_dns(value)
            if fp is None or value in control_addrs:
                continue
            method = "dns.blockpage" if fp.kind == "blockpage" else "dns.injection"
            what = "a known block-page address" if fp.kind == "blockpage" else "a known forged-answer address"
            return blocked(method, CONFIRMED, E.sentence(
                f"{E.name(q)} was answered {value}{' by ' + str(r['source']) if r.get('source') else ''}",
                f"{what} ({fp.id}, {fp.who}; source: {fp.source.split(';')[0]})"))
    return None


def judge(m: Measurement, q: dict[str, Any], ctx: Context, checks: ChecksArg = None) -> Verdict:
    """Judge one ``dns_query``/``resolve`` observation. An ``ok`` result means
    "DNS is consistent"; composed probes then look at the later stages."""
    cqs = control_queries(m, q)
    control_addrs = {a for c in cqs for r in responses(c) for a in r.get("addresses") or ()}
    rs = responses(q)
    found = _fingerprint_verdict(m, q, control_addrs, rs)
    if found:
        return found
    if m.annotations and _to_no_dns_server(m):
        return _no_dns_server_verdict(q)
    if m.control_state != "present":
        return inconclusive(E.sentence(f"{E.name(q)}: {q.get('failure') or E.addresses(first_addresses(q, rs))}",
                                       m.control_note()))
    if not cqs:
        return inconclusive(E.sentence(f"{E.name(q)}: {q.get('failure') or E.addresses(first_addresses(q, rs))}",
                                       "the control did not look the name up"))
    c_ok = [c for c in cqs if not c.get("failure") and first_addresses(c)]

    race = _race(q, rs)
    if race:
        return blocked("dns.injection", STRONG, E.sentence(
            f"{E.name(q)} got {len(rs)} responses with different answers for one query: " + race,
            "an on-path injector answers first and the real answer arrives later", _control_desc(cqs, c_ok)))

    failure = q.get("failure")
    if failure:
        return _judge_failure(m, q, failure, cqs, c_ok, _control_desc(cqs, c_ok), ctx)

    addrs = first_addresses(q, rs)
    if not addrs:
        return inconclusive(E.sentence(f"{E.name(q)} succeeded with no addresses", _control_desc(cqs, c_ok)))
    if c_ok:
        if any(is_bogon(a) for a in addrs) and not any(is_bogon(a) for a in control_addrs):
            bad = [a for a in addrs if is_bogon(a)]
            return blocked("dns.bogon", 0.9, E.sentence(
                f"{E.name(q)} answered {E.addresses(bad)} (unroutable/private)",
                f"the control resolved {E.addresses(sorted(control_addrs))}"))
    # _answered_only_inside needs a control lookup that timed out: most have none
    only_inside = (_answered_only_inside(m, q, cqs, control_addrs)
                   if any(c.get("failure") == TIMEOUT for c in cqs) else None)
    if only_inside:
        return only_inside
    if not c_ok:
        c_fail = dict.fromkeys(c.get("failure") for c in cqs)  # in the control's order (a set's varies by run)
        return inconclusive(E.sentence(f"{E.name(q)} answered {E.addresses(addrs)}",
                                       f"the control could not resolve the name ({', '.join(map(str, c_fail))})"),
                            WEAK)
    if set(addrs) & control_addrs:
        return ok(E.sentence(f"{E.name(q)} answered {E.addresses(addrs)}, shared with the control"), 0.9)
    m_asns = {x for r in responses(q) for x in _asns(r)}
    c_asns = {x for c in cqs for r in responses(c) for x in _asns(r)}
    if m_asns & c_asns:
        return ok(E.sentence(f"{E.name(q)} answered {E.addresses(addrs)} in AS{', AS'.join(sorted(m_asns & c_asns))}",
                             "the same network as the control's answers (CDN/geo-DNS)"), 0.8)
    return _differing(m, q, addrs, control_addrs, checks, ctx)


def _control_desc(cqs: list[dict[str, Any]], c_ok: list[dict[str, Any]]) -> str:
    """The control's lookups, as evidence (made only where a verdict shows it)."""
    return "; ".join(E.outcome(c, control=True) + (f" ({E.addresses(first_addresses(c))})" if c_ok else "")
                     for c in cqs[:2])


def _race(q: dict[str, Any], rs: list[dict[str, Any]] | None = None) -> str | None:
    """A description of differing responses to one query, or None (``rs``: ``responses(q)``)."""
    if rs is None:
        rs = responses(q)
    if len(rs) < 2:
        return None
    sets = {(r.get("rcode"), frozenset(r.get("addresses") or [])) for r in rs}
    if len(sets) < 2:
        return None  # duplicates (retransmits): not a race
    return ", then ".join(_describe_response(r) for r in rs[:4])


def _judge_failure(m: Measurement, q: dict[str, Any], failure: str, cqs: list[dict[str, Any]],
                   c_ok: list[dict[str, Any]], c_desc: str, ctx: Context) -> Verdict:
    c_failures = {c.get("failure") for c in cqs}
    if failure == NO_ANSWER and NO_ANSWER in c_failures:
        return ok(E.sentence(f"{E.name(q)}: no records of this type, the same for the control"), 0.8)
    if failure in c_failures:
        return down(E.sentence(f"{E.name(q)} failed {failure}", f"the control failed the same way: {c_desc}"),
                    0.8 if failure == NXDOMAIN else 0.6)
    if not c_ok:
        return inconclusive(E.sentence(f"{E.name(q)} failed {failure}", c_desc), WEAK)
    if failure == NXDOMAIN:
        return blocked("dns.nxdomain", 0.8, E.sentence(f"{E.name(q)} failed {failure} (NXDOMAIN)",
                                                       f"the name exists: {c_desc}"))
    method = {SERVFAIL: "dns.servfail", REFUSED: "dns.refused", TIMEOUT: "dns.timeout"}.get(failure)
    if method:
        others = ctx.resolver_answers_others(m, q.get("resolver"), q.get("query_name"))
        if others:
            return blocked(method, MODERATE - (0.05 if method == "dns.timeout" else 0), E.sentence(
                f"{E.name(q)} failed {failure}", f"the same resolver answered {others} other name(s) in this run",
                c_desc))
        return inconclusive(E.sentence(f"{E.name(q)} failed {failure}", c_desc,
                                       "no other answer from this resolver shows that it works"), WEAK)
    return inconclusive(E.sentence(f"{E.name(q)} failed {failure}", c_desc), WEAK)


def _to_no_dns_server(m: Measurement) -> bool:
    """True for a query sent, by design, to an address that runs no DNS server (the
    ``no_dns_server`` annotation, or a confirmation re-test made for that purpose)."""
    reason = str(m.annotations.get("retest_reason") or "")
    return bool(m.annotations.get("no_dns_server")) or "runs no DNS server" in reason


def _no_dns_server_verdict(q: dict[str, Any]) -> Verdict:
    rs = responses(q)
    if rs:
        return blocked("dns.injection", STRONG, E.sentence(
            f"{E.name(q)} was sent to an address that runs no DNS server and still got "
            f"{len(rs)} response(s): {_describe_response(rs[0])}",
            "only an on-path injector can answer there (GFWatch's method)"))
    return ok(E.sentence(f"{E.name(q)} to an address that runs no DNS server got no answer "
                         f"({q.get('failure')}): no injector answered on this path"), 0.7)


def _answered_only_inside(m: Measurement, q: dict[str, Any], cqs: list[dict[str, Any]],
                          control_addrs: set[str]) -> Verdict | None:
    """GFWatch's test: the control gets no answer from this resolver address, we do."""
    resolver = q.get("resolver")
    if not resolver or resolver == "system":
        return None
    same = [c for c in cqs if c.get("resolver") == resolver]
    if not same or not all(c.get("failure") == TIMEOUT and not responses(c) for c in same):
        return None
    addrs = first_addresses(q)
    no_dns_server = bool(m.annotations.get("no_dns_server"))
    if not no_dns_server and (not control_addrs or set(addrs) & control_addrs):
        return None  # an ISP resolver may just refuse outsiders: not enough on its own
    why = ("the address runs no DNS server (annotation no_dns_server)" if no_dns_server
           else f"the answers share nothing with the control's ({E.addresses(sorted(control_addrs))})")
    return blocked("dns.injection", STRONG if no_dns_server else MODERATE, E.sentence(
        f"{E.name(q)} got an answer ({E.addresses(addrs)}) but the control's query to the same resolver "
        f"{resolver} got none", why, "an on-path device answered for it"))


def _differing(m: Measurement, q: dict[str, Any], addrs: list[str], control_addrs: set[str],
               checks: ChecksArg, ctx: Context) -> Verdict:
    if callable(checks):
        checks = checks()
    name = q.get("query_name") or m.host
    good = [(a, checks[a][1]) for a in addrs if checks and a in checks and checks[a][0]]
    good += [(a, why) for a in addrs if (why := ctx.validated(name, a)) and a not in dict(good)]
    base = f"{E.name(q)} answered {E.addresses(addrs)}, none shared with the control ({E.addresses(sorted(control_addrs))})"
    if good:
        a, why = good[0]
        return ok(E.sentence(base, f"but {a} is consistent: {why} (CDN/geo-DNS answer)"), 0.8)
    bad = [(a, checks[a][1]) for a in addrs if checks and a in checks and not checks[a][0]]
    if bad and len(bad) == len([a for a in addrs if checks and a in checks]):
        a, why = bad[0]
        return blocked("dns.inconsistent", MODERATE, E.sentence(base, f"and {a} fails consistency: {why}"))
    return inconclusive(E.sentence(base, "no TLS certificate or content links these addresses to the name, "
                                         "so a CDN or geo-DNS answer cannot be ruled out"), 0.45)


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``dns`` / ``system``: judge each lookup; the most telling one wins."""
    qs = m.ops("dns_query") + m.ops("resolve")
    if not qs:
        return inconclusive("The measurement has no DNS observation.", 0.0)
    vs = [judge(m, q, ctx) for q in qs]
    return pick(vs)


def pick(vs: list[Verdict]) -> Verdict:
    """The verdict that says most: blocked > inconclusive > down > ok, then by confidence."""
    if len(vs) == 1:
        return vs[0]
    return max(vs, key=lambda v: (_ORDER[v.verdict], v.confidence))


_ORDER = {"blocked": 3, "inconclusive": 2, "down": 1, "ok": 0}
