"""VPN and circumvention protocols: port blocking and handshake blocking.

Every VPN probe records a ``connect`` (TCP; for UDP a socket "connect" that
always succeeds) and one or more protocol operations (``openvpn_handshake``,
``wireguard_handshake``, ``ikev2_sa_init``, ``ssh_banner``, ...). The generic
rule compares the first failing operation with the control's same operation:

* ``vpn.<protocol>.blocked.connect_drop`` / ``.connect_reset`` / ``.connect_reject``:
  the TCP connection to the server's port times out / is reset / is refused
  while the control connects (IP or port blocking).
* ``vpn.<protocol>.blocked.handshake_drop``: the protocol handshake gets no
  answer while the control gets the server's answer (DPI dropping, e.g.
  OpenVPN opcode fingerprinting, WireGuard type-1 messages: CENSORSHIP-FACTS.md).
* ``vpn.<protocol>.blocked.handshake_reset``: the handshake is reset or closed
  (``connection_reset``/``eof_error``) while the control completes it.

Refused or timed out in both: ``down``. The registry lets protocol owners
replace this rule with a more specific one (``register(name, rule, replace=True)``).
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

#: probes judged by the generic rule (names from censorscope.probes.registry)
PROTOCOLS = ("openvpn", "wireguard", "ikev2", "pptp", "l2tp", "sstp", "ssh", "tor", "socks", "httpconnect")

#: operations that are not the protocol's own handshake
_GENERIC_OPS = frozenset({"dns_query", "resolve"})

_CONNECT = {"generic_timeout_error": ("connect_drop", 0.8), "connection_reset": ("connect_reset", 0.8),
            "connection_refused": ("connect_reject", MODERATE), "host_unreachable": ("connect_reject", 0.65)}
_HANDSHAKE = {"generic_timeout_error": ("handshake_drop", 0.8), "connection_reset": ("handshake_reset", STRONG),
              "eof_error": ("handshake_reset", MODERATE)}


def _control_same(m: Measurement, o: dict[str, Any]) -> list[dict[str, Any]]:
    same_op = m.control_ops(str(o.get("operation")))
    same_addr = [c for c in same_op if address_of(c) == address_of(o)]
    return same_addr or same_op


def judge_steps(m: Measurement, prefix: str, *, ops: list[dict[str, Any]] | None = None) -> Verdict:
    """Compare the first failing operation with the control's (``prefix``: e.g. ``vpn.openvpn.blocked``)."""
    steps = [o for o in (ops if ops is not None else m.observations) if o.get("operation") not in _GENERIC_OPS]
    if not steps:
        return inconclusive("The measurement has no protocol observation.", 0.0)
    failed = next((o for o in steps if o.get("failure")), None)
    if failed is None:
        last = steps[-1]
        if m.control_state != "present":
            return inconclusive(E.sentence(E.outcome(last), m.control_note()), 0.2)
        return ok(E.sentence(f"{E.outcome(last)} ({len(steps)} operations, none failed)"), 0.9)
    if m.control_state != "present":
        return inconclusive(E.sentence(E.outcome(failed), m.control_note()))
    ctl = _control_same(m, failed)
    if not ctl:
        return inconclusive(E.sentence(E.outcome(failed), f"the control made no {failed.get('operation')}"))
    c_ok = [c for c in ctl if not c.get("failure")]
    failure = str(failed.get("failure"))
    if not c_ok:
        return down(E.sentence(E.outcome(failed), "the control failed too: " + E.outcome(ctl[0], control=True)),
                    0.75 if failure == ctl[0].get("failure") else 0.6)
    table = _CONNECT if failed.get("operation") == "connect" else _HANDSHAKE
    if failure in table:
        sub, conf = table[failure]
        answer = "got the server's answer" if table is _HANDSHAKE else "connected"
        return blocked(f"{prefix}.{sub}", conf, E.sentence(
            E.outcome(failed), f"{E.outcome(c_ok[0], control=True)} (the control {answer})"),
            endpoint=address_of(failed) or _parent_address(m, failed), at=failed.get("t0"))
    return inconclusive(E.sentence(E.outcome(failed), E.outcome(c_ok[0], control=True),
                                   f"{failure} is not a known blocking signature"), WEAK)


def _parent_address(m: Measurement, o: dict[str, Any]) -> str | None:
    return next((address_of(a) for a in m.ancestors(o) if address_of(a)), None)


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Generic VPN rule: ``vpn.<probe>.blocked.<sub-method>``."""
    return judge_steps(m, f"vpn.{m.probe}.blocked")
