"""Fully encrypted traffic (FET): ``vpn.fet.blocked.fet`` and ``vpn.fet.blocked.residual``.

The GFW examines the first data packet of a TCP connection and blocks
high-entropy ("fully encrypted") traffic that none of its exemptions cover,
with probability about 0.263 per connection, then blocks the 3-tuple for
120-180 s (Wu et al., USENIX Security 2023; CENSORSHIP-FACTS.md). One failure
is therefore weak evidence, and one success proves nothing either.

The ``fet`` probe makes connections to one server and port, each a
``connect`` plus a ``fet_attempt`` with ``kind`` ``fet`` (a non-exempt,
random-looking first payload), ``control`` (the same length, exempt) or
``followup`` (exempt, after a delay: reveals residual blocking). The rule, in
time order:

* nothing failed -> ``ok``;
* the control vantage's ``fet`` attempts failed too -> ``down``;
* the **first** failure is a ``fet`` attempt, every exempt attempt before it
  worked and the control vantage's ``fet`` attempts worked; then
  - later exempt attempts or connects to the same server and port failed as
    well: the trigger left the 3-tuple blocked -> ``vpn.fet.blocked.residual``
    (the evidence names the random-looking trigger);
  - else two or more ``fet`` attempts failed while every exempt attempt got
    its answer: random-looking traffic is singled out -> ``vpn.fet.blocked.fet``;
* a first failure on an exempt attempt means the server or path is
  unreliable, not that random-looking traffic is singled out -> inconclusive;
  so is a single ``fet`` failure with nothing after it.
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

#: method prefix (the VPN rules' form, ``vpn.<protocol>.blocked.<sub-method>``)
PREFIX = "vpn.fet.blocked"


def _steps(obs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``fet_attempt`` observations and failed connects (a connection that never carried a payload)."""
    return [o for o in obs if o.get("operation") == "fet_attempt"
            or (o.get("operation") == "connect" and o.get("failure"))]


def _kind(o: dict[str, Any]) -> str:
    return str(o.get("kind")) if o.get("operation") == "fet_attempt" else "connect"


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``fet``."""
    steps = sorted(_steps(m.observations), key=lambda o: (o.get("t0") or 0.0, o.get("id") or 0))
    fet = [o for o in steps if _kind(o) == "fet"]
    if not fet:
        return inconclusive("The measurement has no fet_attempt with a non-exempt payload.", 0.0)
    failed = [o for o in steps if o.get("failure")]
    if not failed:
        return ok(E.sentence(f"all {len(steps)} attempts got answers ({len(fet)} non-exempt, "
                             f"e.g. {E.outcome(fet[0])})"), 0.8)
    summary = f"{len([o for o in fet if o.get('failure')])} of {len(fet)} non-exempt attempts failed"
    if m.control_state != "present":
        return inconclusive(E.sentence(summary, f"first failure: {E.outcome(failed[0])}", m.control_note()))
    c_fet = [o for o in m.control_observations if o.get("operation") == "fet_attempt" and o.get("kind") == "fet"]
    if not c_fet:
        return inconclusive(E.sentence(summary, "the control made no non-exempt attempt"))
    c_ok = [o for o in c_fet if not o.get("failure")]
    if not c_ok:
        return down(E.sentence(summary, f"the control's failed too ({E.outcome(c_fet[0], control=True)})"), 0.7)
    first = failed[0]
    if _kind(first) != "fet":
        return inconclusive(E.sentence(f"the first failure was an exempt attempt: {E.outcome(first)}",
                                       "the server or path is unreliable; random-looking traffic is not "
                                       "singled out"), WEAK)
    later = [o for o in failed[1:] if _kind(o) != "fet"]
    n_fet_failed = sum(1 for o in fet if o.get("failure"))
    if n_fet_failed < 2 and not later:
        return inconclusive(E.sentence(E.outcome(first), f"only 1 of {len(fet)} non-exempt attempts failed and "
                                       "nothing after it; the trigger fires with p~0.26, repeat to conclude"), WEAK)
    parts = [f"{summary}, the first of them before any exempt failure: {E.outcome(first)}"]
    if later:
        parts.append(f"{len(later)} later exempt attempt(s)/connect(s) to the same server and port failed too, "
                     f"e.g. {E.outcome(later[0])}: after the random-looking trigger the censor blocks the "
                     "3-tuple whatever it carries (residual blocking)")
        method = f"{PREFIX}.residual"
    else:
        n_exempt = sum(1 for o in steps if _kind(o) in ("control", "followup"))
        parts.append(f"all {n_exempt} exempt attempts got answers: random-looking traffic is singled out")
        method = f"{PREFIX}.fet"
    parts.append(f"the control's {len(c_ok)} of {len(c_fet)} non-exempt attempts got answers")
    return blocked(method, STRONG if n_fet_failed >= 2 else MODERATE, E.sentence(*parts),
                   endpoint=address_of(first), at=first.get("t0"))
