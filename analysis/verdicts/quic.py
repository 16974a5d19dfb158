"""QUIC: ``quic.blocked`` when the QUIC handshake gets no answer but the control's does.

The GFW decrypts QUIC Initials, reads the SNI and drops the 3-tuple's UDP
for 180 s (Zohaib et al., USENIX Security 2025; CENSORSHIP-FACTS.md). A
timeout is the signature; a TLS-over-TCP handshake to the same host that
succeeds from the same vantage in the same batch makes it stronger (only
QUIC is singled out). Both sides failing: ``down``.
"""

from __future__ import annotations

from typing import Any

from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import Context
from censorscope.analysis.verdicts.core import (
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


def _tls_works(m: Measurement, ctx: Context) -> str | None:
    """The first successful TLS handshake with this SNI from another measurement of the same vantage
    and run (batch order), described; None if there is none."""
    index = _successful_tls(ctx)
    if index is not None:
        try:
            pairs = index.get((m.vantage_key, m.host), ())
        except TypeError:  # m (not from this batch) has an unhashable vantage
            pairs = None
        if pairs is not None:
            for o, hs in pairs:
                if o is not m:
                    return f"{o.probe} measurement {o.id}: {E.outcome(hs)}"
            return None
    for o in ctx.same_vantage(m):
        for hs in o.ops_view("tls_handshake"):
            if not hs.get("failure") and hs.get("server_name") == m.host:
                return f"{o.probe} measurement {o.id}: {E.outcome(hs)}"
    return None


_TlsIndex = dict[tuple[Any, Any], list[tuple[Measurement, dict[str, Any]]]]


def _successful_tls(ctx: Context) -> _TlsIndex | None:
    """(vantage, SNI) -> successful handshakes of the batch in batch order, built once per batch (a scan
    of the vantage per quic measurement made judging quadratic); None when a vantage is unhashable."""
    return ctx.index("quic.successful_tls", _build_successful_tls)


def _build_successful_tls(ctx: Context) -> _TlsIndex | None:
    index: _TlsIndex | None = {}
    try:
        for o in ctx.measurements:
            for hs in o.ops_view("tls_handshake"):
                if not hs.get("failure"):
                    index.setdefault((o.vantage_key, hs.get("server_name")), []).append((o, hs))  # type: ignore[union-attr]
    except TypeError:
        index = None
    return index


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``quic``."""
    hss = m.ops("quic_handshake")
    if not hss:
        return inconclusive("The measurement has no quic_handshake observation.", 0.0)
    hs = hss[-1]
    if m.control_state != "present":
        return inconclusive(E.sentence(E.outcome(hs), m.control_note()), 0.2 if not hs.get("failure") else 0.3)
    ctl = m.control_ops("quic_handshake")
    if not ctl:
        return inconclusive(E.sentence(E.outcome(hs), "the control made no QUIC handshake"))
    c_ok = [c for c in ctl if not c.get("failure")]
    failure = hs.get("failure")
    if not failure:
        return ok(E.sentence(E.outcome(hs)), 0.9)
    if not c_ok:
        return down(E.sentence(E.outcome(hs), E.outcome(ctl[0], control=True)), 0.7)
    if failure == "generic_timeout_error":
        tls = _tls_works(m, ctx)
        parts = [E.outcome(hs), E.outcome(c_ok[0], control=True)]
        if tls:
            parts.append(f"TLS over TCP to the same host works ({tls})")
        return blocked("quic.blocked", STRONG if tls else 0.75, E.sentence(*parts), endpoint=address_of(hs),
                       at=hs.get("t0"))
    return inconclusive(E.sentence(E.outcome(hs), E.outcome(c_ok[0], control=True),
                                   f"{failure} is not the QUIC blocking signature (a silent drop)"), WEAK)
