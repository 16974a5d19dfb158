"""Combining attempts, and recognising residual censorship.

**Attempts.** The runner re-tests a suspicious result: later attempts carry
``attempt`` > 0 and ``annotations.confirms = <first measurement_id>``. Many
triggers are probabilistic (the GFW resets ~75 % of triggering HTTP requests;
fully encrypted traffic is blocked with p~0.26), so one group gets one verdict
from all its attempts:

* a confirmed fingerprint in any attempt decides;
* two or more attempts with the same blocking method -> ``blocked`` (more
  attempts, more confidence), even if others got through;
* one blocked attempt among several that worked -> ``inconclusive`` (chance
  failures happen; repeat to conclude); a single attempt stands on its own;
* every attempt down -> ``down``; every attempt ok -> ``ok``; anything else
  -> ``inconclusive``.

**Residual censorship.** After a trigger, the GFW keeps blocking the
(client, server, port) triple for 90-180 s (WWW 2021; GFW Report 2020; Wu et
al. 2023). A failure on the same server and port within
:data:`RESIDUAL_WINDOW` seconds after *another input* was blocked there is
evidence of that residual state, not of this input's blocking: the verdict
becomes ``inconclusive`` with method ``residual`` and says so, unless the
measurement itself reached the same endpoint with an innocuous name at the
same time (``self_controlled``). Residual attempts of a group are left out
when the group has other attempts (a re-test after the penalty box decides).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

from censorscope.analysis.verdicts.core import (
    BLOCKED,
    CONFIRMED,
    DOWN,
    INCONCLUSIVE,
    OK,
    Measurement,
    Verdict,
    address_of,
    inconclusive,
)

#: longest documented residual-blocking time, seconds (ESNI and FET: 120-180 s)
RESIDUAL_WINDOW = 180.0

#: methods whose failures a censor's residual state can cause
#: (throttling too: a policed flow's queue can starve the next handshake to the same server)
STATEFUL_METHODS = ("tcp.", "tls.sni_", "http.reset", "http.drop", "fet.", "quic.", "vpn.", "throttled")
#: methods that are content triggers and so can leave residual state; address blocking
#: (tcp.*) is the same for every input and leaves none
TRIGGER_METHODS = tuple(m for m in STATEFUL_METHODS if m != "tcp.")

#: method of a failure explained by residual censorship
RESIDUAL = "residual"


def group_key(m: Measurement) -> str:
    """The measurement id a group of attempts is known by."""
    return m.confirms or m.id


def groups(measurements: list[Measurement]) -> list[list[Measurement]]:
    """Attempts grouped (first attempt first), groups in order of their first start time."""
    by: dict[str, list[Measurement]] = defaultdict(list)
    for m in measurements:
        by[group_key(m)].append(m)
    out = [g if len(g) == 1 else sorted(g, key=lambda m: (m.confirms is not None, m.attempt, m.start or 0.0))
           for g in by.values()]
    return sorted(out, key=lambda g: (g[0].start or 0.0) if len(g) == 1 else min((m.start or 0.0) for m in g))


def _is_comparison(first: Measurement, m: Measurement) -> bool:
    """A re-test that measures something else on purpose (innocuous SNI, same-path reference)."""
    reason = str(m.annotations.get("retest_reason") or "")
    return m is not first and ("innocuous" in reason or "same-path reference" in reason)


def combine_attempts(ms: list[Measurement], vs: list[Verdict]) -> Verdict:
    """One verdict for a group of attempts (see the module docstring).

    Re-tests that measure something else on purpose (an innocuous SNI, a
    same-path reference) are comparisons, not attempts: they never count as
    "worked". Re-tests with another probe (a TLS re-test of a web failure) and
    queries to an address without a DNS server count only when they show
    blocking.
    """
    if len(vs) == 1:
        return vs[0]
    first = ms[0]
    counted: list[tuple[Measurement, Verdict]] = []
    comparisons: list[tuple[Measurement, Verdict]] = []
    for m, v in zip(ms, vs, strict=True):
        probe_query = "runs no DNS server" in str(m.annotations.get("retest_reason") or "")
        if _is_comparison(first, m) or ((m.probe != first.probe or probe_query) and v.verdict != BLOCKED):
            comparisons.append((m, v))
        else:
            counted.append((m, v))
    v = _combine_counted([m for m, _ in counted], [v for _, v in counted])
    if comparisons:
        v = v.with_evidence("Comparisons: " + "; ".join(
            f"{m.probe} {m.id} ({m.annotations.get('retest_reason', 'retest').split(':')[0]}): {c.verdict}"
            for m, c in comparisons) + ".")
    return v


def _combine_counted(ms: list[Measurement], vs: list[Verdict]) -> Verdict:
    if len(vs) == 1:
        return vs[0]
    fresh = [(m, v) for m, v in zip(ms, vs, strict=True) if v.method != RESIDUAL]
    if not fresh:
        return vs[0].with_evidence(f"(all {len(vs)} attempts fell in residual windows)")
    if len(fresh) < len(vs):
        # attempts inside another input's penalty box say nothing about this input: judge the rest
        v = _combine_counted([m for m, _ in fresh], [v for _, v in fresh])
        return v.with_evidence(f"({len(vs) - len(fresh)} of {len(vs)} attempts discounted as residual censorship)")
    n = len(vs)
    confirmed = [v for v in vs if v.verdict == BLOCKED and v.confidence >= CONFIRMED]
    if confirmed:
        return _with_count(confirmed[0], f"attempt evidence: {_tally(ms, vs)}")
    blocked_by: Counter[str | None] = Counter(v.method for v in vs if v.verdict == BLOCKED)
    if blocked_by:
        method, k = blocked_by.most_common(1)[0]
        chain = _trigger_chain(vs)
        if chain:
            # the first attempt tripped the censor; later ones met its residual state on the same
            # server and port (other failure modes, e.g. a reset SYN): all show the same blocking
            method, k = chain, sum(v.verdict == BLOCKED for v in vs)
        best = max((v for v in vs if v.method == method), key=lambda v: v.confidence)
        if k >= 2:
            conf = min(0.95, best.confidence + 0.05 * (k - 1))
            return replace(best, confidence=round(conf, 3), evidence=(
                f"{k} of {n} attempts show {method}: "
                f"{_tally(ms, vs)}. First: {best.evidence}"))
        return inconclusive(f"Only 1 of {n} attempts shows {method}; the others: {_tally(ms, vs)}. "
                            f"A single failure may be chance: repeat to conclude. It was: {best.evidence}", 0.5)
    kinds = {v.verdict for v in vs}
    if kinds == {DOWN}:
        return _with_count(max(vs, key=lambda v: v.confidence), f"all {n} attempts down")
    if kinds == {OK}:
        return _with_count(min(vs, key=lambda v: v.confidence), f"all {n} attempts ok")
    return inconclusive(f"The {n} attempts disagree: {_tally(ms, vs)}. First: {vs[0].evidence}",
                        max(v.confidence for v in vs if v.verdict == INCONCLUSIVE) if INCONCLUSIVE in kinds else 0.4)


def _trigger_chain(vs: list[Verdict]) -> str | None:
    """The first blocked attempt's method when every blocked attempt is a stateful failure on the
    same endpoint (its own residual state explains differing later failure modes), else None."""
    bl = [v for v in vs if v.verdict == BLOCKED]
    if len(bl) < 2 or len({v.method for v in bl}) < 2:
        return None
    if len({v.endpoint for v in bl}) == 1 and bl[0].endpoint and all(_stateful(v.method) for v in bl):
        return bl[0].method
    return None


def _tally(ms: list[Measurement], vs: list[Verdict]) -> str:
    return ", ".join(f"#{m.attempt} {m.probe} {v.verdict}{' ' + v.method if v.method else ''}" for m, v in zip(ms, vs, strict=True))


def _with_count(v: Verdict, note: str) -> Verdict:
    return v.with_evidence(f"({note})")


def _stateful(method: str | None) -> bool:
    return bool(method) and method.startswith(STATEFUL_METHODS) and not method.startswith("http.blockpage")  # type: ignore[union-attr]


class ResidualTracker:
    """Remembers, per (vantage, transport, endpoint), the last blocking trigger; call in time order.

    The transport matters: a censor's state for UDP 1194 (or QUIC on UDP 443) says nothing
    about TCP 1194 (TLS on TCP 443)."""

    def __init__(self) -> None:
        self._last: dict[tuple[Any, str, str], tuple[float, str, str, str, str]] = {}

    def check(self, m: Measurement, v: Verdict) -> Verdict:
        """Turn a failure that follows another input's trigger into ``residual``; else record it.

        Call in order of :func:`event_time`: concurrent measurements interleave, and what
        counts is whether this failure's operation started after the other's trigger."""
        when = event_time(m, v)
        endpoints = v.endpoints or ((v.endpoint,) if v.endpoint else ())
        if v.verdict != BLOCKED or not endpoints or when is None or not _stateful(v.method):
            return v
        key = trigger_key(m, v)
        slots: dict[str, tuple[Any, str, str]] = {}  # endpoint -> its key in _last (transport_of scans)
        for ep in endpoints:
            slot = slots[ep] = (m.vantage_key, transport_of(m, ep), ep)
            prior = self._last.get(slot)
            if (prior and prior[2] != key and prior[4] != group_key(m) and 0 <= when - prior[0] <= RESIDUAL_WINDOW
                    and not v.self_controlled):
                t, mid, inp, method, _ = prior
                return Verdict(INCONCLUSIVE, RESIDUAL, 0.4, (
                    f"This failure came {when - t:.1f} s after measurement {mid} ({inp}) was blocked by {method} "
                    f"on the same server and port {ep}: residual censorship of that server:port "
                    f"(up to {RESIDUAL_WINDOW:.0f} s) explains it, so it is not evidence that this input is "
                    f"blocked. It was: {v.evidence}"), ep)
        if str(v.method).startswith(TRIGGER_METHODS):
            for ep in endpoints:
                self._last[slots[ep]] = (when, m.id, key, str(v.method), group_key(m))
        return v


def trigger_key(m: Measurement, v: Verdict) -> str:
    """What a censor keys on for this failure: the SNI for TLS/QUIC/throttling, which is the
    same trigger for every URL of a site (the name the handshake sent, so re-tests of an
    ``IP:PORT`` with different names are different triggers; else the input's host); the
    whole input otherwise (HTTP keywords live in the path)."""
    if str(v.method).startswith(("tls.", "quic.", "throttled")):
        sni = next((str(o["server_name"]).lower() for op in ("tls_handshake", "quic_handshake", "throughput")
                    for o in m.ops_view(op) if o.get("server_name")), None)
        if sni or m.host:
            return sni or str(m.host)
    return m.input


def transport_of(m: Measurement, endpoint: str) -> str:
    """``udp`` or ``tcp``: the ``proto`` the measurement recorded for ``endpoint`` (an observation
    there, failed ones first, or the connect it builds on); ``quic_handshake`` is UDP; ``tcp`` when
    nothing says. Only blocked verdicts ask, so the scan is rare."""
    there = [o for o in m.observations if address_of(o) == endpoint]
    for o in sorted(there, key=lambda o: not o.get("failure")):
        if o.get("operation") == "quic_handshake":
            return "udp"
        for x in (o, *m.ancestors(o)):
            if x.get("proto") in ("tcp", "udp"):
                return str(x["proto"])
    return "tcp"


def event_time(m: Measurement, v: Verdict) -> float | None:
    """POSIX time the verdict's failing operation started (the measurement start if unknown)."""
    if m.start is None:
        return None
    return m.start + (v.at or 0.0)
