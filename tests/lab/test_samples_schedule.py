"""The sample generator's schedule, scenarios and time stamping (no lab needed)."""

from __future__ import annotations

import datetime as dt

from censorscope.lab import samples


def test_day_scenarios_follow_the_schedule():
    assert not samples.day_scenario(1).censor
    d4 = samples.day_scenario(4)
    assert [c["behaviour"] for c in d4.censor] == ["dns_injection"]
    assert set(d4.censor[0]["names"]) == {"chat.example.com", "video.example.net"}
    d9 = samples.day_scenario(9)
    assert set(next(c for c in d9.censor if c["behaviour"] == "dns_injection")["names"]) == {"chat.example.com"}
    assert {c["behaviour"] for c in d9.censor} == {"dns_injection", "rst_injection", "ip_blackhole"}
    truth = {t.target: (t.verdict, t.method) for t in d9.truth}
    assert truth["https://video.example.net/"] == ("ok", None)
    assert truth["https://dark.example.net/"] == ("blocked", "tcp.blackhole")
    assert truth["https://dead.example.org/"] == ("down", None)
    assert len(d9.sites) == len(samples.SCHEDULE)


def test_ground_truth_episodes():
    doc = samples.ground_truth(list(range(1, 11)), 2)
    ep = {s["site"]: s["episode"] for s in doc["sites"]}
    assert ep["video.example.net"] == {"start": "2026-03-04", "end": "2026-03-09"}
    assert ep["chat.example.com"] == {"start": "2026-03-04", "end": None}
    assert ep["www.example.com"] is None and ep["dead.example.org"] is None
    # a subset of days: the episode starts on the first measured day it is on
    assert samples.ground_truth([3, 6], 1)["sites"][5]["episode"] == {"start": "2026-03-06", "end": None}


def test_restamp_moves_runs_to_the_simulated_day_and_rewrites_references():
    real = dt.datetime(2026, 11, 28, 16, 0, 0, tzinfo=dt.UTC)
    a = {"measurement_id": "20261128T160000.000000Z_aaaa", "measurement_start_time": "2026-11-28T16:00:00.000000Z",
         "annotations": {}}
    b = {"measurement_id": "20261128T160003.500000Z_bbbb", "measurement_start_time": "2026-11-28T16:00:03.500000Z",
         "annotations": {"confirms": "20261128T160000.000000Z_aaaa"}}
    out = samples.restamp([a, b], day=5, run=1, runs=2)
    assert out[0]["measurement_start_time"] == "2026-03-05T12:00:00.000000Z"
    assert out[1]["measurement_start_time"] == "2026-03-05T12:00:03.500000Z"
    assert out[0]["measurement_id"] == "20260305T120000.000000Z_aaaa"
    assert out[1]["annotations"]["confirms"] == out[0]["measurement_id"]
    assert out[1]["annotations"]["real_start_time"] == "2026-11-28T16:00:03.500000Z"
    assert out[1]["annotations"]["real_measurement_id"] == "20261128T160003.500000Z_bbbb"
    assert out[1]["annotations"]["simulated_day"] == 5 and out[1]["annotations"]["simulated_run"] == 2
    assert out[0]["campaign"] == "lab-samples"
    assert a["measurement_start_time"] == real.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # inputs untouched
