"""TLS rules: SNI-triggered resets and drops, and interception.

* ``tls.sni_reset``: the TCP connection succeeded, the ClientHello was
  answered by a reset (``connection_reset``; ``eof_error`` counts with lower
  confidence) while the control's handshake with the same SNI succeeded.
  The GFW resets both ends on a listed SNI (CENSORSHIP-FACTS.md, WWW 2021).
* ``tls.sni_drop``: the ClientHello got no answer (``generic_timeout_error``)
  while the control's handshake succeeded (ESNI/ECH-style dropping).
* ``tls.mitm``: the handshake completed but the certificate differs from the
  control's and fails verification (Kazakhstan 2019/2020 interception).

A handshake with an innocuous SNI to the same address in the same
measurement that succeeds is the strongest comparison: it shows the server
and the path work and only the name differs (``self_controlled``).
"""

from __future__ import annotations

from typing import Any

from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import Context, leaf_sha256, verified_for_name
from censorscope.analysis.verdicts.core import (
    CONFIRMED,
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

_FAILURE_METHODS = {
    "connection_reset": ("tls.sni_reset", STRONG),
    "eof_error": ("tls.sni_reset", MODERATE),
    "generic_timeout_error": ("tls.sni_drop", 0.8),
}


def _issuer(hs: dict[str, Any]) -> str | None:
    certs = hs.get("peer_certificates") or []
    return str(certs[0].get("issuer")) if certs and isinstance(certs[0], dict) else None


def control_handshakes(m: Measurement, hs: dict[str, Any]) -> list[dict[str, Any]]:
    """Control handshakes with the same SNI (same address first)."""
    sni = hs.get("server_name")
    same_sni = [c for c in m.control_ops_view("tls_handshake") if c.get("server_name") == sni]
    if not same_sni:
        return same_sni
    addr = address_of(hs)
    same_addr = [c for c in same_sni if address_of(c) == addr]
    return same_addr or same_sni


def innocuous_success(m: Measurement, hs: dict[str, Any]) -> dict[str, Any] | None:
    """A successful handshake of this measurement to the same address with another SNI."""
    for o in m.ops_view("tls_handshake"):
        if (o is not hs and not o.get("failure") and address_of(o) == address_of(hs)
                and o.get("server_name") != hs.get("server_name")):
            return o
    return None


def judge_handshake(m: Measurement, hs: dict[str, Any]) -> Verdict:
    """Judge one ``tls_handshake`` against the control's handshakes with the same SNI."""
    addr = address_of(hs)
    if m.control_state != "present":
        return inconclusive(E.sentence(E.outcome(hs), m.control_note()), 0.2 if not hs.get("failure") else 0.3)
    ctl = control_handshakes(m, hs)
    if not ctl:
        return inconclusive(E.sentence(E.outcome(hs), f"the control made no handshake with SNI {hs.get('server_name')}"))
    c_ok = [c for c in ctl if not c.get("failure")]
    failure = hs.get("failure")
    if failure:
        if not c_ok:
            same = failure == ctl[0].get("failure")
            return down(E.sentence(E.outcome(hs), E.outcome(ctl[0], control=True)), 0.75 if same else 0.6)
        if failure in _FAILURE_METHODS:
            method, conf = _FAILURE_METHODS[failure]
            inno = innocuous_success(m, hs)
            parts = [E.outcome(hs), E.outcome(c_ok[0], control=True)]
            if inno:
                conf = min(CONFIRMED, conf + 0.1)
                parts.append(f"and {E.outcome(inno)} on the same address")
            return blocked(method, conf, E.sentence(*parts), endpoint=addr, self_controlled=inno is not None,
                           at=hs.get("t0"))
        return inconclusive(E.sentence(E.outcome(hs), E.outcome(c_ok[0], control=True),
                                       f"{failure} is not a known censorship signature"), WEAK)
    return _judge_certificate(hs, c_ok, ctl, addr)


def _judge_certificate(hs: dict[str, Any], c_ok: list[dict[str, Any]], ctl: list[dict[str, Any]],
                       addr: str | None) -> Verdict:
    leaf = leaf_sha256(hs)
    if verified_for_name(hs):
        return ok(E.sentence(f"{E.outcome(hs)} with a certificate valid for {hs.get('server_name')}"), 0.9)
    if not c_ok:
        return inconclusive(E.sentence(E.outcome(hs) + " but the certificate did not verify",
                                       E.outcome(ctl[0], control=True)), WEAK)
    c_leaves = {leaf_sha256(c) for c in c_ok}
    if leaf and leaf in c_leaves:
        return ok(E.sentence(E.outcome(hs), "the certificate is the control's own (sha256 "
                             f"{leaf[:16]}…), so its verification result is the server's, not a censor's"), 0.85)
    v = hs.get("verification") or {}
    why = v.get("failure") or v.get("detail") or "verification failed"
    c0 = c_ok[0]
    if verified_for_name(c0):
        return blocked("tls.mitm", STRONG, E.sentence(
            f"{E.outcome(hs)} but its certificate (issuer {_issuer(hs)}) fails verification: {why}",
            f"the control got a different certificate (issuer {_issuer(c0)}) that verifies"), endpoint=addr)
    if _issuer(hs) != _issuer(c0):
        return blocked("tls.mitm", MODERATE, E.sentence(
            f"{E.outcome(hs)} with a certificate from issuer {_issuer(hs)} that fails verification ({why})",
            f"the control got issuer {_issuer(c0)} from the same server name"), endpoint=addr)
    return inconclusive(E.sentence(E.outcome(hs), "a different certificate from the control's, same issuer "
                                   f"({_issuer(hs)}), neither verifies: rotation or load balancing is likely"), WEAK)


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``tls``: judge the handshakes with the target's SNI (innocuous ones are comparisons)."""
    hss = m.ops("tls_handshake")
    target = [h for h in hss if h.get("server_name") in (m.host, None)] or hss
    if not target:
        conns = [c for c in m.ops("connect") if c.get("failure")]
        if conns:
            from censorscope.analysis.verdicts.tcp import judge_connect

            return judge_connect(m, conns[0])
        return inconclusive("The measurement has no tls_handshake observation.", 0.0)
    vs = [judge_handshake(m, h) for h in target]
    good = [v for v in vs if v.verdict == "ok"]
    bad = [v for v in vs if v.verdict == "blocked"]
    if bad and not good:
        return max(bad, key=lambda v: v.confidence)
    if good and not bad:
        return good[0]
    if good and bad:
        return inconclusive(E.sentence(bad[0].evidence, "but another handshake with the same SNI succeeded: "
                                       + good[0].evidence), WEAK)
    return max(vs, key=lambda v: (v.verdict == "inconclusive", v.confidence))
