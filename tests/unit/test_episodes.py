"""Aggregations and change-point episodes on synthetic verdict series with known change points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from censorscope.analysis.aggregate import blocking_matrix, compare_vantages, first_last_blocked, method_mix
from censorscope.analysis.episodes import change_points, episodes

DAY0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _verdicts(days: list[float], *, per_day: int = 8, seed: int = 0, target: str = "https://a.example/",
              asn: str = "AS1", method: str = "tls.sni_reset", noise: float = 0.0) -> pd.DataFrame:
    """per_day measurements a day; each blocked with the day's probability (a probabilistic censor)."""
    rng = np.random.default_rng(seed)
    rows = []
    for d, p in enumerate(days):
        for k in range(per_day):
            r = rng.random()
            if r < noise:
                verdict = "inconclusive"
            else:
                verdict = "blocked" if rng.random() < p else "ok"
            rows.append({
                "measurement_id": f"{target}-{d}-{k}", "input": target, "probe": "web", "vantage_cc": "ZZ",
                "vantage_asn": asn, "verdict": verdict, "method": method if verdict == "blocked" else None,
                "confidence": 0.9, "evidence": "", "rules_version": "t",
                "measurement_start_time": (DAY0 + pd.Timedelta(days=d, hours=k)).isoformat(),
            })
    return pd.DataFrame(rows)


def test_blocking_matrix_counts_only_conclusive_verdicts():
    v = _verdicts([0.0, 1.0], per_day=4)
    extra = v.iloc[:2].copy()
    extra["verdict"] = ["down", "inconclusive"]
    extra["measurement_id"] = ["x1", "x2"]
    m = blocking_matrix(pd.concat([v, extra]), freq="D")
    assert list(m.columns) == ["input", "vantage_cc", "vantage_asn", "period", "n", "ok", "down", "blocked",
                               "inconclusive", "blocking_rate", "method"]
    day0, day1 = m.iloc[0], m.iloc[1]
    assert (day0["n"], day0["ok"], day0["down"], day0["inconclusive"], day0["blocking_rate"]) == (6, 4, 1, 1, 0.0)
    assert day1["blocking_rate"] == 1.0 and day1["method"] == "tls.sni_reset"
    assert m["period"].iloc[1] == DAY0 + pd.Timedelta(days=1)


def test_matrix_needs_times():
    v = _verdicts([1.0]).drop(columns=["measurement_start_time"])
    with pytest.raises(ValueError, match="measurement_start_time"):
        blocking_matrix(v)


def test_method_mix_first_last_and_vantage_comparison():
    a = _verdicts([0, 1, 1, 0], asn="AS1", method="dns.injection")
    b = _verdicts([0, 0, 0, 0], asn="AS2")
    v = pd.concat([a, b], ignore_index=True)
    mix = method_mix(v)
    assert list(mix["method"]) == ["dns.injection"] and mix["share"].iloc[0] == 1.0
    fl = first_last_blocked(v)
    assert len(fl) == 1 and fl["first_blocked"].iloc[0] == DAY0 + pd.Timedelta(days=1)
    assert fl["last_blocked"].iloc[0] == DAY0 + pd.Timedelta(days=2, hours=7)
    cmp = compare_vantages(v)
    assert cmp.loc["https://a.example/", "AS1"] == 0.5 and cmp.loc["https://a.example/", "AS2"] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_change_points_on_noisy_series(seed: int):
    rng = np.random.default_rng(seed)
    x = np.r_[rng.uniform(0, 0.15, 25), rng.uniform(0.7, 1.0, 12), rng.uniform(0, 0.15, 20)]
    cps = change_points(x)
    assert len(cps) == 2
    assert abs(cps[0] - 25) <= 1 and abs(cps[1] - 37) <= 1


def test_no_change_points_in_stationary_series():
    rng = np.random.default_rng(7)
    for level in (0.0, 0.1, 0.5, 0.9):
        assert change_points(np.clip(level + rng.normal(0, 0.05, 60), 0, 1)) == []


def test_episodes_find_start_and_end_of_probabilistic_blocking():
    # GFW-like: ~75 % of requests blocked during the episode (Rambert et al., WWW 2021)
    days = [0.0] * 20 + [0.75] * 10 + [0.0] * 15
    ep = episodes(_verdicts(days, per_day=12, noise=0.1))
    assert len(ep) == 1
    row = ep.iloc[0]
    assert abs((row["start"] - DAY0).days - 20) <= 1
    assert abs((row["end"] - DAY0).days - 30) <= 1
    assert 0.6 < row["mean_rate"] <= 1.0 and row["method"] == "tls.sni_reset"


def test_ongoing_episode_has_no_end_and_unblocked_target_has_none():
    on = _verdicts([0.0] * 10 + [1.0] * 5, target="https://on.example/")
    off = _verdicts([0.0] * 15, target="https://off.example/")
    ep = episodes(pd.concat([on, off], ignore_index=True))
    assert list(ep["input"]) == ["https://on.example/"]
    assert pd.isna(ep["end"].iloc[0]) and ep["periods"].iloc[0] == 5


def test_two_episodes_are_separate():
    days = [0.0] * 10 + [1.0] * 6 + [0.0] * 10 + [0.9] * 6 + [0.0] * 8
    ep = episodes(_verdicts(days))
    assert len(ep) == 2
    assert [(s - DAY0).days for s in ep["start"]] == [10, 26]
