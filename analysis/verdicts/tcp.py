"""TCP rules: blackholing and resets at connect time.

* ``tcp.blackhole``: the SYN (or the answer to it) vanishes: ``connect`` fails
  ``generic_timeout_error`` while the control connects to the same address and
  port. The GFW blocks Tor and Shadowsocks servers this way (CENSORSHIP-FACTS.md).
* ``tcp.reset``: the connection is reset (``connection_reset``) during the
  handshake while the control connects.
* ``tcp.reject``: the SYN is answered with a RST (``connection_refused``) or
  an ICMP unreachable (``host_unreachable``, lower confidence) while the
  control connects: a censor rejecting looks like a closed port or a dead
  host, so only the control tells them apart.

Refused/timeout for the control too means the server is ``down``. Network
unreachable is local routing, not censorship: inconclusive.
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
    find_control,
    inconclusive,
    ok,
)

_METHODS = {
    "generic_timeout_error": ("tcp.blackhole", 0.8),
    "connection_reset": ("tcp.reset", STRONG - 0.05),
    "connection_refused": ("tcp.reject", 0.7),
    # an ICMP unreachable from the path (admin-prohibited/host-unreachable); never local routing,
    # which fails network_unreachable at once
    "host_unreachable": ("tcp.reject", 0.65),
}


def control_connects(m: Measurement, conn: dict[str, Any], *, any_address: bool = False) -> list[dict[str, Any]]:
    """The control's connects to the same address (or to any address, for names with CDN answers)."""
    same = find_control(m, "connect", address=address_of(conn))
    if same or not any_address:
        return same
    return list(m.control_ops_view("connect"))


def judge_connect(m: Measurement, conn: dict[str, Any], *, any_address: bool = False) -> Verdict:
    """Judge one failed ``connect`` against the control's connects."""
    failure = conn.get("failure")
    addr = address_of(conn)
    if not failure:
        return ok(E.sentence(E.outcome(conn)))
    if m.control_state != "present":
        return inconclusive(E.sentence(E.outcome(conn), m.control_note()))
    ctl = control_connects(m, conn, any_address=any_address)
    if not ctl:
        return inconclusive(E.sentence(E.outcome(conn), f"the control did not connect to {addr}"))
    c_ok = [c for c in ctl if not c.get("failure")]
    if not c_ok:
        return down(E.sentence(E.outcome(conn), "the control failed too: " + "; ".join(
            E.outcome(c, control=True) for c in ctl[:2])), 0.75 if failure == ctl[0].get("failure") else 0.6)
    if failure in _METHODS:
        method, conf = _METHODS[failure]
        return blocked(method, conf, E.sentence(E.outcome(conn), E.outcome(c_ok[0], control=True)),
                       endpoint=addr, at=conn.get("t0"))
    return inconclusive(E.sentence(E.outcome(conn), E.outcome(c_ok[0], control=True),
                                   f"{failure} is usually local, not censorship"), WEAK)


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``tcp``: every address tried; one that connects makes the target reachable."""
    conns = m.ops("connect")
    if not conns:
        return inconclusive("The measurement has no connect observation.", 0.0)
    good = [c for c in conns if not c.get("failure")]
    if good:
        if m.control_state != "present":
            return inconclusive(E.sentence(E.outcome(good[0]), m.control_note()), 0.2)
        return ok(E.sentence(E.outcome(good[0])), 0.9)
    vs = [judge_connect(m, c) for c in conns]
    blocks = [v for v in vs if v.verdict == "blocked"]
    if blocks and len(blocks) == len(vs):
        return max(blocks, key=lambda v: v.confidence)
    if all(v.verdict == "down" for v in vs):
        return vs[0]
    return max(vs, key=lambda v: (v.verdict == "inconclusive", v.confidence))
