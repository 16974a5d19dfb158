"""VPN and circumvention protocols: how a server is blocked, from evidence.

Every VPN probe records a ``connect`` (TCP; for UDP a socket "connect" that
sends nothing and always succeeds, ``proto`` says which) and one or more
protocol operations (``openvpn_handshake``, ``wireguard_handshake``,
``ikev2_sa_init``, ``ssh_banner``, ...). The rule compares the first failing
operation with the control's same operation (``judge_steps``), then names the
sub-method the evidence supports, ``vpn.<protocol>.blocked.<sub-method>``:

* ``port``: the **TCP connection** to the server's port times out, is reset
  or refused while the control connects. No protocol byte was sent, so the
  censor blocked the address or port, not the protocol's content.
* ``fingerprint``: the TCP connection was **established** (the port is
  reachable) but the protocol's handshake then got no answer or was reset
  while the control completed it: the censor recognised the protocol (e.g.
  OpenVPN opcode fingerprinting, Xue et al. 2022; CENSORSHIP-FACTS.md).
* UDP: there is no connection to establish, and a VPN server answers nothing
  but its own handshake, so an innocuous datagram cannot prove the port
  reachable. A handshake without an answer (control answered) is therefore
  ``port_or_fingerprint``, *unless* the same vantage got the same protocol
  answered by the same server on another UDP port in the same batch: then the
  protocol passes and this port is singled out: ``port``.
* ``fet`` and ``residual`` come from the ``fet`` probe's rule (fet.py).

A failed UDP ``connect`` (local routing: nothing was sent) is
``inconclusive``. Refused or timed out in both: ``down``. A probe that expects no answer (the
wireguard probe without the client key) proves nothing: ``inconclusive``.
The registry lets protocol owners replace this rule with a more specific one
(``register(name, rule, replace=True)``).
"""

from __future__ import annotations

from typing import Any

from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import Context
from censorscope.analysis.verdicts.core import (
    BLOCKED,
    MODERATE,
    STRONG,
    WEAK,
    Measurement,
    Verdict,
    address_of,
    blocked,
    down,
    inconclusive,
    ip_of,
    ok,
)

#: probes judged by the generic rule (names from censorscope.probes.registry)
PROTOCOLS = ("openvpn", "wireguard", "ikev2", "pptp", "l2tp", "sstp", "ssh", "tor", "socks", "httpconnect")

#: the sub-methods this rule names (fet.py adds ``fet`` and ``residual``)
PORT, FINGERPRINT, PORT_OR_FINGERPRINT = "port", "fingerprint", "port_or_fingerprint"

#: how far apart (seconds) a same-protocol measurement on another port may be to count as evidence
OTHER_PORT_WINDOW = 3600.0

#: operations that are not the protocol's own handshake
_GENERIC_OPS = frozenset({"dns_query", "resolve"})
#: operations that are not a protocol exchange of their own
_NOT_PROTOCOL_OPS = ("connect", "dns_query", "resolve")  # a tuple: compared with ==, as before

_CONNECT = {"generic_timeout_error": ("connect_drop", 0.8), "connection_reset": ("connect_reset", 0.8),
            "connection_refused": ("connect_reject", MODERATE), "host_unreachable": ("connect_reject", 0.65)}
_HANDSHAKE = {"generic_timeout_error": ("handshake_drop", 0.8), "connection_reset": ("handshake_reset", STRONG),
              "eof_error": ("handshake_reset", MODERATE)}


def _control_same(m: Measurement, o: dict[str, Any]) -> list[dict[str, Any]]:
    same_op = m.control_ops(str(o.get("operation")))
    same_addr = [c for c in same_op if address_of(c) == address_of(o)]
    return same_addr or same_op


def judge_steps(m: Measurement, prefix: str, *, ops: list[dict[str, Any]] | None = None) -> Verdict:
    """Compare the first failing operation with the control's (``prefix``: e.g. ``throughput``).

    The method's last part names the failing stage: ``connect_drop`` /
    ``connect_reset`` / ``connect_reject`` or ``handshake_drop`` /
    ``handshake_reset`` (the throughput rule maps these to its own methods)."""
    return _judge(m, prefix, ops)[0]


def _judge(m: Measurement, prefix: str, ops: list[dict[str, Any]] | None) -> tuple[Verdict, dict[str, Any] | None]:
    steps = [o for o in (ops if ops is not None else m.observations) if o.get("operation") not in _GENERIC_OPS]
    if not steps:
        return inconclusive("The measurement has no protocol observation.", 0.0), None
    failed = next((o for o in steps if o.get("failure")), None)
    if failed is None:
        last = steps[-1]
        if m.control_state != "present":
            return inconclusive(E.sentence(E.outcome(last), m.control_note()), 0.2), None
        return ok(E.sentence(f"{E.outcome(last)} ({len(steps)} operations, none failed)"), 0.9), None
    if m.control_state != "present":
        return inconclusive(E.sentence(E.outcome(failed), m.control_note())), failed
    ctl = _control_same(m, failed)
    if not ctl:
        return inconclusive(E.sentence(E.outcome(failed), f"the control made no {failed.get('operation')}")), failed
    c_ok = [c for c in ctl if not c.get("failure")]
    failure = str(failed.get("failure"))
    if not c_ok:
        return down(E.sentence(E.outcome(failed), "the control failed too: " + E.outcome(ctl[0], control=True)),
                    0.75 if failure == ctl[0].get("failure") else 0.6), failed
    table = _CONNECT if failed.get("operation") == "connect" else _HANDSHAKE
    if failure in table:
        sub, conf = table[failure]
        answer = "got the server's answer" if table is _HANDSHAKE else "connected"
        return blocked(f"{prefix}.{sub}", conf, E.sentence(
            E.outcome(failed), f"{E.outcome(c_ok[0], control=True)} (the control {answer})"),
            endpoint=address_of(failed) or _parent_address(m, failed), at=failed.get("t0")), failed
    return inconclusive(E.sentence(E.outcome(failed), E.outcome(c_ok[0], control=True),
                                   f"{failure} is not a known blocking signature"), WEAK), failed


def _parent_address(m: Measurement, o: dict[str, Any]) -> str | None:
    return next((address_of(a) for a in m.ancestors(o) if address_of(a)), None)


def transport(m: Measurement, o: dict[str, Any]) -> str | None:
    """``tcp`` or ``udp``: the observation's own ``proto``, else that of the connect it builds on."""
    for x in (o, *m.ancestors(o)):
        proto = x.get("proto")
        if proto in ("tcp", "udp"):
            return str(proto)
    return None


def _port_of(address: str | None) -> str | None:
    return address.rsplit(":", 1)[1] if address and ":" in address else None


# --- evidence from the rest of the batch: the same protocol answered on another UDP port ---------
def _answered_udp(ctx: Context) -> dict[tuple[Any, str, str], list[tuple[Measurement, dict[str, Any]]]]:
    """(vantage, probe, IP) -> (measurement, protocol operation) pairs that got the server's answer over
    UDP with nothing failed; built once per batch, on first use."""
    return ctx.index("vpn.answered_udp", _build_answered_udp)


def _build_answered_udp(ctx: Context) -> dict[tuple[Any, str, str], list[tuple[Measurement, dict[str, Any]]]]:
    index: dict[tuple[Any, str, str], list[tuple[Measurement, dict[str, Any]]]] = {}
    for other in ctx.measurements:
        if other.probe not in PROTOCOLS or any(o.get("failure") for o in other.observations):
            continue
        for o in other.observations:
            if (o.get("operation") in _NOT_PROTOCOL_OPS or not _answered_op(o)
                    or transport(other, o) != "udp"):
                continue
            ip = ip_of(address_of(o) or _parent_address(other, o))
            if ip:
                index.setdefault((other.vantage_key, other.probe, ip), []).append((other, o))
    return index


def _answered_op(o: dict[str, Any]) -> bool:
    """True when the operation got an answer (not a silence the probe expected)."""
    return (o.get("response_expected") is not False and o.get("outcome") != "no_response_expected"
            and not o.get("failure"))


def _other_port_answer(m: Measurement, ctx: Context, failed: dict[str, Any]) -> tuple[Measurement, dict] | None:
    addr = address_of(failed) or _parent_address(m, failed)
    ip, port = ip_of(addr), _port_of(addr)
    if not ip or m.start is None:
        return None
    for other, o in _answered_udp(ctx).get((m.vantage_key, m.probe, ip), ()):
        other_port = _port_of(address_of(o) or _parent_address(other, o))
        if (other is not m and other_port and other_port != port and other.start is not None
                and abs(other.start - m.start) <= OTHER_PORT_WINDOW):
            return other, o
    return None


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Generic VPN rule: ``vpn.<probe>.blocked.<sub-method>`` (module docstring)."""
    prefix = f"vpn.{m.probe}.blocked"
    v, failed = _judge(m, prefix, None)
    if v.verdict != BLOCKED or failed is None:
        if v.verdict == "ok":
            silent = [o for o in m.observations if o.get("response_expected") is False and not o.get("responses")]
            if silent:
                return inconclusive(E.sentence(
                    E.outcome(silent[0]), "no answer was expected (without the client's key the server stays "
                    "silent by design), so this says nothing about whether the protocol gets through"), 0.1)
        return v
    stage = str(v.method).rsplit(".", 1)[-1]
    proto = transport(m, failed)
    if failed.get("operation") == "connect" and proto == "udp":
        # connecting a UDP socket sends nothing: only the vantage's own routing can fail it (no route,
        # an unreachable or prohibit route), never a censor on the path
        return inconclusive(E.sentence(v.evidence, "connecting a UDP socket sends no packet, so its failure is "
                                       "this vantage's own routing, not the path to the server"), WEAK)
    how = "dropped" if stage.endswith("_drop") else "reset" if stage.endswith("_reset") else "refused"
    if failed.get("operation") == "connect" and proto != "udp":
        return _sub(v, f"{prefix}.{PORT}", f"the TCP connection itself was {how} before any {m.probe} byte was "
                    "sent: the server's address or port is blocked, not the protocol's content")
    if proto == "tcp":
        return _sub(v, f"{prefix}.{FINGERPRINT}", f"the TCP connection to the port was established (the port "
                    f"is reachable) and then the {m.probe} handshake was {how}: the censor recognised the protocol")
    if proto == "udp":
        other = _other_port_answer(m, ctx, failed)
        if other is not None:
            om, oo = other
            caveat = (" (or a fingerprint that misses the non-ESP marker of port 4500)" if m.probe == "ikev2" else "")
            return _sub(v, f"{prefix}.{PORT}", f"measurement {om.id} from this vantage got the server's answer to "
                        f"the same protocol on another UDP port ({E.outcome(oo)}): the protocol passes, this port "
                        f"is singled out: port blocking{caveat}")
        return _sub(v, f"{prefix}.{PORT_OR_FINGERPRINT}", "UDP has no connection to establish and the server "
                    "answers nothing but its own handshake, so nothing proves the port reachable: port blocking "
                    "and protocol fingerprinting look the same here (measure the protocol on another UDP port of "
                    "the same server to tell them apart)")
    return v


def _sub(v: Verdict, method: str, why: str) -> Verdict:
    stage = str(v.method).rsplit(".", 1)[-1]
    return blocked(method, v.confidence, E.sentence(v.evidence, f"{why} (stage: {stage})"),
                   endpoint=v.endpoint, at=v.at)
