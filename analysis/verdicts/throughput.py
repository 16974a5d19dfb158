"""Throttling: ``throttled`` only against a reference on the same path.

A slow transfer is not throttling: congested or lossy paths are slow for
everything ("Great Bottleneck"). The rule compares the target transfer with a
**reference** transfer from the same vantage to the same address with an
innocuous SNI (another ``throughput`` observation of the same measurement, or
a ``throughput`` measurement of the same batch) using
:func:`censorscope.analysis.throughput_stats.compare_throughput`: median-rate
ratio below 0.5 and a one-sided Mann-Whitney U test with p < 0.01. Without a
reference the verdict is ``inconclusive`` however slow the target was; a
reference as slow as the target means a slow path, ``ok``. Russia's Twitter
throttling (130-150 kbit/s, Xue et al., IMC 2021) is the model.
"""

from __future__ import annotations

from typing import Any

from censorscope.analysis.throughput_stats import compare_throughput
from censorscope.analysis.verdicts import evidence as E
from censorscope.analysis.verdicts.context import Context
from censorscope.analysis.verdicts.core import (
    MODERATE,
    STRONG,
    Measurement,
    Verdict,
    address_of,
    blocked,
    inconclusive,
    ok,
)

#: whole-transfer rate ratio below which a too-fast-to-sample reference still shows throttling
WHOLE_RATIO = 0.1
#: a reference must move at least this much to count (a 404 page proves nothing)
MIN_REFERENCE_BYTES = 256 * 1024


def _is_target(o: dict[str, Any], host: str | None) -> bool:
    return o.get("server_name") in (host, None)


def references(m: Measurement, target: dict[str, Any], ctx: Context) -> list[tuple[str, dict[str, Any]]]:
    """Same-path reference transfers: (where, observation)."""
    addr = address_of(target)
    out = [(f"this measurement's {E.name(o)} (SNI {o.get('server_name')})", o)
           for o in m.ops("throughput") if o is not target and not o.get("failure")
           and address_of(o) == addr and o.get("server_name") != target.get("server_name")]
    for other in ctx.same_vantage_probe(m, "throughput"):
        for o in other.ops_view("throughput"):
            if (not o.get("failure") and address_of(o) == addr and o.get("samples")
                    and o.get("server_name") != target.get("server_name")):
                out.append((f"measurement {other.id} {E.name(o)} (SNI {o.get('server_name')})", o))
    return out


def _judge_failure(m: Measurement) -> Verdict:
    from censorscope.analysis.verdicts.vpn import judge_steps

    v = judge_steps(m, "throughput")
    if v.verdict != "blocked":
        return v
    # a failed transfer is a blocking signature of the stage that failed, not throttling
    op = v.method.rsplit(".", 1)[-1] if v.method else ""
    method = {"connect_drop": "tcp.blackhole", "connect_reset": "tcp.reset", "connect_reject": "tcp.reject",
              "handshake_drop": "tls.sni_drop", "handshake_reset": "tls.sni_reset"}.get(op)
    if method is None:
        return inconclusive(v.evidence, 0.5)
    return blocked(method, v.confidence, v.evidence, endpoint=v.endpoint, at=v.at)


def rule(m: Measurement, ctx: Context) -> Verdict:
    """Probe ``throughput``."""
    tps = [o for o in m.ops("throughput") if _is_target(o, m.host)] or m.ops("throughput")
    if not tps or any(o.get("failure") for o in m.observations if o.get("operation") != "resolve"):
        if any(o.get("failure") for o in m.observations):
            return _judge_failure(m)
        return inconclusive("The measurement has no throughput observation.", 0.0)
    target = tps[0]
    refs = references(m, target, ctx)
    ctl = [c for c in m.control_ops("throughput") if not c.get("failure") and c.get("samples")]
    result = compare_throughput(
        target.get("samples") or [],
        reference=[r.get("samples") or [] for _, r in refs] if refs else None,
        control=ctl[0].get("samples") if ctl else None,
    )
    where = f"{E.name(target)}"
    ref_note = f"reference: {refs[0][0]}" if refs else ""
    if result.status == "throttled":
        return blocked("throttled", STRONG, E.sentence(f"{where}: {result.explanation}", ref_note),
                       endpoint=address_of(target))
    if result.status == "not_throttled":
        return ok(E.sentence(f"{where}: {result.explanation}", ref_note), 0.8)
    whole = _whole_transfer_gap(target, refs, result.n_target)
    if whole:
        return blocked("throttled", MODERATE, E.sentence(f"{where}: {result.explanation}", whole),
                       endpoint=address_of(target), at=target.get("t0"))
    return inconclusive(E.sentence(f"{where}: {result.explanation}"), 0.4)


def _whole_transfer_gap(target: dict[str, Any], refs: list[tuple[str, dict[str, Any]]], n_target: int) -> str | None:
    """A same-path reference too fast to sample (one interval) cannot feed the U test, but a gap of
    :data:`WHOLE_RATIO` or more between whole-transfer rates, with a reference that moved real data
    and a well-sampled target, is no path effect: say so, with moderate confidence."""
    t_rate = target.get("rate_bps")
    big = [(w, r) for w, r in refs if (r.get("bytes") or 0) >= MIN_REFERENCE_BYTES and r.get("rate_bps")]
    if not t_rate or not big or n_target < 5:
        return None
    w, r = min(big, key=lambda x: x[1]["rate_bps"])
    if t_rate >= WHOLE_RATIO * r["rate_bps"]:
        return None
    return (f"the whole transfers differ {r['rate_bps'] / t_rate:.0f}-fold: {t_rate:.0f} vs {r['rate_bps']:.0f} "
            f"rate_bps for {w} ({r.get('bytes')} bytes), too fast to sample but far beyond path variation")
