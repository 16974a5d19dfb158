"""Is a slow transfer throttled, or is the path just slow? A pure comparison.

Throttling (e.g. Russia's SNI-based policing of Twitter to ~130-150 kbit/s;
Xue et al., "Throttling Twitter", IMC 2021) looks like a slow download, but so
does a congested or lossy path (traffic into and out of China is slow without
any censorship). Slowness alone is therefore never enough. This module compares
the target transfer's per-interval rates with

* a **reference** transfer on the *same path* from the *same vantage* that a
  censor would not single out (the same address with an innocuous SNI, or an
  innocuous host behind the same bottleneck), and
* optionally a **control** transfer of the target from an uncensored helper,
  which shows that the server itself can serve fast.

Rule: the target is *throttled* when it is markedly slower than the reference
(overall-rate ratio below ``ratio_threshold``) **and** a one-sided Mann-Whitney U
test says its rates over successive windows are stochastically smaller
(p < ``alpha``).
When the target is not markedly slower than the reference (the reference is
slow too: the path is slow), it is *not throttled*. Markedly slower but not
significantly (too few intervals, too noisy) is *inconclusive*, and so is
everything without a reference: nothing else separates throttling from path
slowness.

Windowed rates of one TCP transfer are autocorrelated, so the U test's
p-value is optimistic; the ratio threshold is the guard against calling small,
"significant" differences throttling. Pooling several transfers (retests)
makes the test more honest: pass a list of sample lists.

Samples are the ``samples`` field of a ``throughput`` observation: a list of
``[t, cumulative_bytes]`` pairs (docs/observations.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Version of the comparison rule; stored with verdicts that use it.
RULE_VERSION = "1"

Samples = Sequence[Sequence[float]]


@dataclass(frozen=True)
class MannWhitney:
    """Result of a one-sided Mann-Whitney U test that ``x`` is smaller than ``y``."""

    u: float  # U statistic of x (number of (x, y) pairs with x > y, ties count 1/2)
    p_value: float
    method: str  # "exact" or "normal"


@dataclass(frozen=True)
class ThroughputComparison:
    """The outcome of ``compare_throughput``.

    ``status`` is ``throttled``, ``not_throttled`` or ``inconclusive``;
    ``*_rate`` are overall body rates in bytes per second; ratios are the
    target's rate divided by the other's (< 1: target slower); p-values are
    one-sided (target slower) over windowed rates; ``n_*`` count the windows.
    ``explanation`` is one sentence for reports.
    """

    status: str
    explanation: str
    target_rate: float | None
    reference_rate: float | None = None
    control_rate: float | None = None
    ratio_reference: float | None = None
    ratio_control: float | None = None
    p_value_reference: float | None = None
    p_value_control: float | None = None
    n_target: int = 0
    n_reference: int = 0
    n_control: int = 0
    rule_version: str = RULE_VERSION


#: Default width (s) of the windows rates are computed over. Packets of a
#: policed flow arrive in bursts (at 130 kbit/s one 1448-byte segment every
#: ~90 ms), so finer sampling intervals are merged into windows at least this wide.
DEFAULT_WINDOW = 0.25


def _body_points(transfer: Samples) -> list[tuple[float, float]]:
    """The samples from the first one that counts body bytes on (the time to first
    byte measures latency, not throughput); a transfer that was sampled only at its
    start and end keeps both (its rate then includes the time to first byte)."""
    pts = sorted((float(t), float(b)) for t, b in transfer)
    first = next((i for i, (_, b) in enumerate(pts) if b > 0), None)
    if first is None:
        return []
    if first == len(pts) - 1:  # all bytes arrived within one sampling interval
        return pts[max(0, first - 1):]
    return pts[first:]


def interval_rates(samples: Samples | Sequence[Samples], window: float = DEFAULT_WINDOW) -> np.ndarray:
    """Bytes per second over consecutive windows of each transfer, pooled over transfers.

    Accepts one transfer's ``[[t, cumulative_bytes], ...]`` or a list of such
    lists. Sampling intervals are merged into windows at least ``window``
    seconds wide; a transfer shorter than one window gives one rate (its
    whole transfer), a trailing partial window is kept only when at least half
    as wide.
    """
    rates: list[float] = []
    for transfer in _as_transfers(samples):
        pts = _body_points(transfer)
        if len(pts) < 2:
            continue
        own: list[float] = []
        t0, b0 = pts[0]
        for t1, b1 in pts[1:]:
            if t1 - t0 >= window * (1 - 1e-9):
                own.append(max(0.0, b1 - b0) / (t1 - t0))
                t0, b0 = t1, b1
        t_end, b_end = pts[-1]
        if t_end > t0 and (not own or t_end - t0 >= window / 2):
            own.append(max(0.0, b_end - b0) / (t_end - t0))
        rates += own
    return np.asarray(rates, dtype=float)


def overall_rate(samples: Samples | Sequence[Samples]) -> float | None:
    """Body bytes per second over all transfers together (from each one's first byte)."""
    total_bytes = total_time = 0.0
    for transfer in _as_transfers(samples):
        pts = _body_points(transfer)
        if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            total_bytes += pts[-1][1] - pts[0][1]
            total_time += pts[-1][0] - pts[0][0]
    return total_bytes / total_time if total_time > 0 else None


def _as_transfers(samples: Samples | Sequence[Samples]) -> list[Samples]:
    if not samples:
        return []
    first = samples[0]
    if len(first) == 2 and not isinstance(first[0], Sequence):
        return [samples]  # one transfer
    return [s for s in samples if s]


def mann_whitney_less(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> MannWhitney:
    """One-sided Mann-Whitney U test of H1: values of ``x`` tend to be smaller than ``y``.

    Exact null distribution when both samples are small and untied, else the
    normal approximation with tie and continuity corrections.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    both = np.concatenate([x, y])
    ranks = _average_ranks(both)
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    _, counts = np.unique(both, return_counts=True)
    tied = bool((counts > 1).any())
    if not tied and n1 <= 20 and n2 <= 20:
        return MannWhitney(u=u, p_value=_exact_cdf(u, n1, n2), method="exact")
    n = n1 + n2
    mean = n1 * n2 / 2
    tie_term = float(((counts**3) - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12 * ((n + 1) - tie_term)
    if var <= 0:  # every value identical: no evidence either way
        return MannWhitney(u=u, p_value=1.0, method="normal")
    z = (u - mean + 0.5) / math.sqrt(var)  # +0.5: continuity correction towards H0
    return MannWhitney(u=u, p_value=0.5 * math.erfc(-z / math.sqrt(2)), method="normal")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    position = np.empty(len(values), dtype=np.intp)
    position[order] = np.arange(len(values))
    ordered = values[order]
    new_value = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(new_value)[position]  # 1-based index of each value's tie group
    bounds = np.r_[np.nonzero(new_value)[0], len(values)]  # where each group starts, then the end
    return 0.5 * (bounds[group - 1] + bounds[group] + 1)


def _exact_cdf(u: float, n1: int, n2: int) -> float:
    """P(U <= u) under H0 for untied samples of sizes n1, n2.

    Counts, for every U, the arrangements of n1 x's among n1+n2 positions
    (the classic recursion f(n1, n2, u) = f(n1-1, n2, u-n2) + f(n1, n2-1, u)).
    """
    max_u = n1 * n2
    # dist[j][k]: arrangements of i x's and j y's with U = k, built up over i
    dist = [np.zeros(max_u + 1) for _ in range(n2 + 1)]
    for j in range(n2 + 1):
        dist[j][0] = 1.0  # no x's: U = 0 in exactly one way
    for _i in range(1, n1 + 1):
        new = [np.zeros(max_u + 1) for _ in range(n2 + 1)]
        new[0][0] = 1.0  # no y's: U = 0
        for j in range(1, n2 + 1):
            # the largest value is either an x (adds j to U) or a y
            shifted = np.zeros(max_u + 1)
            shifted[j:] = dist[j][: max_u + 1 - j]
            new[j] = shifted + new[j - 1]
        dist = new
    counts = dist[n2]
    total = counts.sum()
    return float(counts[: int(math.floor(u + 1e-9)) + 1].sum() / total)


def _fmt_rate(bps: float | None) -> str:
    if bps is None:
        return "n/a"
    bits = bps * 8
    for unit, scale in (("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.3g} {unit}"
    return f"{bits:.3g} bit/s"


def compare_throughput(
    target: Samples | Sequence[Samples],
    *,
    reference: Samples | Sequence[Samples] | None = None,
    control: Samples | Sequence[Samples] | None = None,
    ratio_threshold: float = 0.5,
    alpha: float = 0.01,
    min_intervals: int = 5,
    window: float = DEFAULT_WINDOW,
) -> ThroughputComparison:
    """Decide whether the target transfer was throttled (see the module docstring).

    ``ratio_threshold``: the target's overall rate must be below this fraction
    of the reference's to count as throttled (0.5: at most half as fast).
    ``window``: width (s) of the windows whose rates the U test compares.
    ``alpha``: significance level of the one-sided U test. ``min_intervals``:
    a target observed for fewer sampling intervals is never called throttled
    (a throttled transfer is slow, so it is observed for long). A fast object
    may finish within a few intervals on either side: the U test's exact null
    distribution is valid for any sample size, it simply cannot reach ``alpha``
    with too few values, and then the answer is ``inconclusive``.
    """
    if not 0 < ratio_threshold < 1:
        raise ValueError("ratio_threshold must be between 0 and 1")
    t_rates = interval_rates(target, window)
    r_rates = interval_rates(reference, window) if reference is not None else np.asarray([])
    c_rates = interval_rates(control, window) if control is not None else np.asarray([])
    t_med = overall_rate(target)
    r_med = overall_rate(reference) if reference is not None else None
    c_med = overall_rate(control) if control is not None else None

    def ratio(other: float | None) -> float | None:
        if t_med is None or other is None or other <= 0:
            return None
        return t_med / other

    def pval(other: np.ndarray) -> float | None:
        if len(t_rates) == 0 or len(other) == 0:
            return None
        return mann_whitney_less(t_rates, other).p_value

    result = dict(
        target_rate=t_med, reference_rate=r_med, control_rate=c_med,
        ratio_reference=ratio(r_med), ratio_control=ratio(c_med),
        p_value_reference=pval(r_rates), p_value_control=pval(c_rates),
        n_target=len(t_rates), n_reference=len(r_rates), n_control=len(c_rates),
    )

    def out(status: str, explanation: str) -> ThroughputComparison:
        return ThroughputComparison(status=status, explanation=explanation, **result)  # type: ignore[arg-type]

    if len(t_rates) == 0:
        return out("inconclusive", "The target transfer received no body bytes to measure a rate from.")
    slow_vs_control = (
        result["ratio_control"] is not None and result["ratio_control"] < ratio_threshold
        and result["p_value_control"] is not None and result["p_value_control"] < alpha
    )
    if len(r_rates) == 0:
        what = "no reference transfer" if reference is None else "a reference transfer without data"
        if slow_vs_control:
            return out("inconclusive", f"The target ({_fmt_rate(t_med)}) is slower than the control "
                       f"({_fmt_rate(c_med)}), but with {what} on the same path, path slowness "
                       "cannot be told apart from throttling.")
        return out("inconclusive", f"With {what} on the same path, throttling cannot be judged "
                   f"(target {_fmt_rate(t_med)}).")
    ratio_ref, p_ref = result["ratio_reference"], result["p_value_reference"]
    if ratio_ref is None or p_ref is None:  # the reference moved no bytes
        return out("inconclusive", "The reference transfer moved no bytes; it cannot serve as a yardstick.")
    if ratio_ref >= ratio_threshold:
        if slow_vs_control:
            return out("not_throttled", f"The target ({_fmt_rate(t_med)}) is slower than the control "
                       f"({_fmt_rate(c_med)}) but the reference on the same path is as slow "
                       f"({_fmt_rate(r_med)}): the path is slow, not the target singled out.")
        return out("not_throttled", f"The target ran at {_fmt_rate(t_med)}, comparable to or faster than the "
                   f"reference on the same path ({_fmt_rate(r_med)}; ratio {ratio_ref:.2f}).")
    if len(t_rates) < min_intervals:
        return out("inconclusive", f"The target ({_fmt_rate(t_med)}) looks slower than the reference "
                   f"({_fmt_rate(r_med)}) but was observed for only {len(t_rates)} sampling intervals; "
                   f"at least {min_intervals} are needed to call it throttled.")
    if p_ref >= alpha:
        return out("inconclusive", f"The target ({_fmt_rate(t_med)}) looks slower than the reference "
                   f"({_fmt_rate(r_med)}, ratio {ratio_ref:.2f}) but not significantly so "
                   f"(one-sided Mann-Whitney p = {p_ref:.2g}, {len(t_rates)} vs {len(r_rates)} intervals).")
    extra = f"; the control from outside got {_fmt_rate(c_med)}" if c_med is not None else ""
    return out("throttled", f"The target ran at {_fmt_rate(t_med)}, {ratio_ref:.2f}x the "
               f"{_fmt_rate(r_med)} of the reference on the same path (one-sided Mann-Whitney "
               f"p = {p_ref:.2g}){extra}.")
