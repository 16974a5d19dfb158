"""Fully encrypted traffic (FET): ``fet.blocked``.

The GFW examines the first data packet of a TCP connection and blocks
high-entropy ("fully encrypted") traffic that none of its exemptions cover,
with probability about 0.263 per connection, then blocks the 3-tuple for
120-180 s (Wu et al., USENIX Security 2023; CENSORSHIP-FACTS.md). One failure
is therefore never enough, and one success proves nothing either.

A ``fet`` measurement makes several connections; each exchange (any
operation other than ``connect``/DNS) carries ``variant``: ``random`` (the
non-exempt, high-entropy first packet) or an exempt variant (e.g.
``exempt_printable``, ``exempt_tls``). The rule: at least two ``random``
exchanges fail (no echo, reset or timeout) while every exempt exchange to the
same server succeeds and the control's ``random`` exchanges succeed ->
``fet.blocked``. Failures on both sides -> ``down``. Exchanges without a
``variant`` count as ``random``.
"""

from __future__ import annotations

from typing import Any

from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import Context
from censorscope.analysis.verdicts.core import (
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

_SKIP = frozenset({"connect", "dns_query", "resolve"})


def _exchanges(obs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ex = [o for o in obs if o.get("operation") not in _SKIP]
    random = [o for o in ex if str(o.get("variant") or "random") == "random"]
    exempt = [o for o in ex if str(o.get("variant") or "random") != "random"]
    return random, exempt


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``fet``."""
    random, exempt = _exchanges(m.observations)
    if not random:
        return inconclusive("The measurement has no fully-encrypted exchange.", 0.0)
    r_fail = [o for o in random if o.get("failure")]
    e_fail = [o for o in exempt if o.get("failure")]
    n = len(random)
    if m.control_state != "present":
        return inconclusive(E.sentence(f"{len(r_fail)} of {n} random-payload exchanges failed", m.control_note()))
    c_random, _ = _exchanges(m.control_observations)
    c_fail = [o for o in c_random if o.get("failure")]
    if not c_random:
        return inconclusive(E.sentence(f"{len(r_fail)} of {n} random-payload exchanges failed",
                                       "the control made no random-payload exchange"))
    if not r_fail:
        return ok(E.sentence(f"all {n} random-payload exchanges succeeded (e.g. {E.outcome(random[0])})"), 0.8)
    if len(c_fail) == len(c_random):
        return down(E.sentence(f"{len(r_fail)} of {n} random-payload exchanges failed",
                               f"all {len(c_random)} of the control's failed too ({E.outcome(c_fail[0], control=True)})"),
                    0.7)
    if e_fail:
        return inconclusive(E.sentence(f"{len(r_fail)} of {n} random-payload exchanges failed",
                                       f"but exempt payloads failed too ({E.outcome(e_fail[0])}): the server "
                                       "or path is unreliable"), WEAK)
    if len(r_fail) < 2:
        return inconclusive(E.sentence(E.outcome(r_fail[0]), f"only 1 of {n} random-payload exchanges failed; "
                                       "the published trigger fires with p~0.26 per connection, repeat to conclude"),
                            WEAK)
    extra = f"; every exempt exchange ({len(exempt)}) succeeded" if exempt else ""
    return blocked("fet.blocked", STRONG if len(r_fail) >= 3 and exempt else MODERATE, E.sentence(
        f"{len(r_fail)} of {n} random-payload exchanges failed (first: {E.outcome(r_fail[0])}){extra}",
        f"{len(c_random) - len(c_fail)} of the control's {len(c_random)} succeeded"),
        endpoint=address_of(r_fail[0]) or next((address_of(a) for a in m.ancestors(r_fail[0]) if address_of(a)), None))
