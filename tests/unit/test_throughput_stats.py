"""analysis.throughput_stats: the U test and the throttled / path-slowness rule on synthetic transfers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from censorscope.analysis.throughput_stats import (
    compare_throughput,
    interval_rates,
    mann_whitney_less,
    overall_rate,
)


def transfer(rate_bps: float, seconds: float = 5.0, interval: float = 0.1, *, jitter: float = 0.1,
             seed: int = 0, ttfb: float = 0.05) -> list[list[float]]:
    """Synthetic samples: cumulative bytes every ``interval`` s at ~``rate_bps`` with noise."""
    rng = np.random.default_rng(seed)
    t, total, out = ttfb, 0.0, [[0.0, 0]]
    while t < seconds:
        t += interval
        total += max(0.0, rate_bps * interval * (1 + jitter * rng.standard_normal()))
        out.append([round(t, 6), int(total)])
    return out


# --- the test itself ---------------------------------------------------------

def brute_force_p(x, y):
    """P(U <= u_observed) by enumerating every assignment of the pooled values."""
    pooled = list(x) + list(y)
    n1 = len(x)

    def u_of(xs, ys):
        return sum((a > b) + 0.5 * (a == b) for a in xs for b in ys)

    observed = u_of(x, y)
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), n1):
        xs = [pooled[i] for i in idx]
        ys = [pooled[i] for i in range(len(pooled)) if i not in idx]
        total += 1
        hits += u_of(xs, ys) <= observed + 1e-9
    return hits / total


def test_exact_p_matches_textbook_value():
    # completely separated samples of 5 and 5: p = 1 / C(10, 5)
    r = mann_whitney_less([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert r.method == "exact"
    assert r.u == 0
    assert r.p_value == pytest.approx(1 / 252)


@pytest.mark.parametrize("seed", range(6))
def test_exact_p_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, 4) + rng.uniform(-1, 1)
    y = rng.normal(0, 1, 5)
    assert mann_whitney_less(x, y).p_value == pytest.approx(brute_force_p(x, y))


def test_normal_approximation_agrees_with_permutation_estimate():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 30)
    y = rng.normal(0.5, 1, 30)
    approx = mann_whitney_less(x, y)
    assert approx.method == "normal"
    pooled = np.concatenate([x, y])
    hits = 0
    for _ in range(4000):
        perm = rng.permutation(pooled)
        hits += mann_whitney_less(perm[:30], perm[30:]).u <= approx.u
    assert approx.p_value == pytest.approx(hits / 4000, abs=0.015)
    assert mann_whitney_less(y, x).p_value > 0.9  # the other direction is not significant


def test_ties_handled_and_identical_samples_give_no_evidence():
    assert mann_whitney_less([5.0] * 10, [5.0] * 10).p_value == 1.0
    tied = mann_whitney_less([1, 1, 2, 2, 3], [2, 3, 3, 4, 4])
    assert tied.method == "normal"
    assert tied.p_value == pytest.approx(brute_force_p([1, 1, 2, 2, 3], [2, 3, 3, 4, 4]), abs=0.03)


def test_empty_sample_is_an_error():
    with pytest.raises(ValueError):
        mann_whitney_less([], [1.0])


# --- per-interval rates --------------------------------------------------------

def test_interval_rates_skip_time_to_first_byte():
    samples = [[0.0, 0], [0.5, 0], [0.6, 1000], [0.7, 2000], [0.8, 3000]]
    rates = interval_rates(samples, window=0.1)
    # [0.5 -> 0.6] holds the first byte but starts before it: skipped
    assert list(rates) == pytest.approx([10000.0, 10000.0])
    assert overall_rate(samples) == pytest.approx(10000.0)


def test_bursty_arrivals_merged_into_windows():
    # a policed flow sampled every 2 ms: one 1448-byte segment every 90 ms, zeros in between
    samples, total = [[0.0, 0]], 0
    for i in range(1, 1501):
        t = i * 0.002
        if i % 45 == 0:
            total += 1448
        samples.append([t, total])
    rates = interval_rates(samples)
    assert len(rates) >= 8 and (rates > 0).all()
    assert np.median(rates) == pytest.approx(1448 / 0.09, rel=0.25)
    # whereas 2 ms intervals would mostly be zero
    assert np.median(interval_rates(samples, window=0.002)) == 0


def test_transfer_within_one_interval_keeps_its_rate():
    assert list(interval_rates([[0.0, 0], [0.004, 1_000_000]])) == pytest.approx([2.5e8])


def test_interval_rates_pool_transfers():
    a = [[0, 0], [1, 100], [2, 200], [3, 300]]
    b = [[0, 0], [1, 50], [2, 100]]
    assert len(interval_rates([a, b])) == 2 + 1
    assert interval_rates([]).size == 0


# --- the rule ------------------------------------------------------------------

FAST = 5e6  # bytes/s
SLOW = 16e3  # ~130 kbit/s, the Twitter throttling rate (Xue et al., IMC 2021)


def test_target_slow_reference_fast_is_throttled():
    r = compare_throughput(transfer(SLOW, seed=1), reference=transfer(FAST, seed=2),
                           control=transfer(FAST, seed=3))
    assert r.status == "throttled"
    assert r.ratio_reference < 0.01
    assert r.p_value_reference < 1e-6
    assert "reference" in r.explanation and "kbit/s" in r.explanation


def test_uniformly_slow_path_is_not_throttled():
    # the control from outside is fast, but the same-path reference is as slow as the target
    r = compare_throughput(transfer(SLOW, seed=1), reference=transfer(SLOW, seed=2),
                           control=transfer(FAST, seed=3))
    assert r.status == "not_throttled"
    assert r.ratio_control < 0.01
    assert 0.5 < r.ratio_reference < 2
    assert "path is slow" in r.explanation


def test_normal_transfer_is_not_throttled():
    r = compare_throughput(transfer(FAST, seed=4), reference=transfer(FAST, seed=5))
    assert r.status == "not_throttled"
    assert r.p_value_reference > 0.01


def test_small_significant_difference_below_ratio_threshold_is_not_throttled():
    # 20 % slower with many intervals: significant, but not throttling
    r = compare_throughput(transfer(0.8 * FAST, seconds=20, jitter=0.02, seed=6),
                           reference=transfer(FAST, seconds=20, jitter=0.02, seed=7))
    assert r.p_value_reference < 1e-6
    assert r.status == "not_throttled"


def test_without_reference_slowness_is_inconclusive():
    r = compare_throughput(transfer(SLOW, seed=1), control=transfer(FAST, seed=3))
    assert r.status == "inconclusive"
    assert "path slowness" in r.explanation
    assert r.p_value_reference is None and r.p_value_control < 1e-6


def test_too_few_intervals_is_inconclusive():
    r = compare_throughput([[0, 0], [0.1, 10], [0.2, 20]], reference=transfer(FAST))
    assert r.status == "inconclusive"
    assert r.n_target < 5


def test_bursty_policer_still_detected_when_pooled_over_retests():
    # a policer that lets an initial burst through at full speed, then polices
    def policed(seed):
        burst = transfer(FAST, seconds=0.3, seed=seed)
        last_t, last_b = burst[-1]
        tail = transfer(SLOW, seconds=4, seed=seed + 100)
        return burst + [[last_t + t, last_b + b] for t, b in tail[1:]]
    r = compare_throughput([policed(1), policed(2)], reference=[transfer(FAST, seed=8), transfer(FAST, seed=9)])
    assert r.status == "throttled"
    assert r.n_target > r.n_reference / 2


def test_fast_short_target_is_not_throttled():
    # a small object at full speed finishes within a few intervals: not slower than a slow reference
    r = compare_throughput([[0, 0], [0.002, 0], [0.004, 500_000], [0.006, 1_000_000], [0.007, 1_048_576]],
                           reference=transfer(SLOW, seed=3))
    assert r.status == "not_throttled" and r.n_target < 5


def test_markedly_slower_but_not_significant_is_inconclusive():
    # 8 slow windows against a reference that gave one: p cannot go below 1/9
    r = compare_throughput(transfer(SLOW, seconds=2.5, seed=2), reference=[[0, 0], [0.1, 0], [0.11, 500_000], [0.12, 1_000_000]])
    assert r.ratio_reference < 0.5 and r.p_value_reference > 0.01
    assert r.status == "inconclusive" and "not significantly" in r.explanation


def test_stalled_reference_is_no_yardstick():
    stalled = [[0, 0], [1.0, 0], [2.0, 0]]
    assert compare_throughput(transfer(SLOW), reference=stalled).status == "inconclusive"


def test_bad_threshold_rejected():
    with pytest.raises(ValueError):
        compare_throughput(transfer(FAST), reference=transfer(FAST), ratio_threshold=1.5)
    assert math.isfinite(compare_throughput(transfer(FAST), reference=transfer(FAST)).ratio_reference)
