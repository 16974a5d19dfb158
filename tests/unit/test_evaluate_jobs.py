"""lab evaluate --jobs: scenarios shared out to labs side by side (the labs replaced by a stand-in).

What must hold whatever the timing: every scenario graded exactly once, the
longest started first, rows returned in the order the scenarios were given, one
lab name per job, and a failing lab stops the others from starting more.
"""

from __future__ import annotations

import threading
import time

import pytest

from censorscope.lab import evaluate as E
from censorscope.lab import scenario as S


def _row(sc_name: str) -> E.Row:
    return E.Row(sc_name, f"https://{sc_name}.example/", "web", "ok", None, "ok", None, True)


@pytest.fixture
def fake_labs(monkeypatch):
    """Replace building a lab and grading in it with a recorder: {lab name: [scenario names, in order]}."""
    taken: dict[str, list[str]] = {}
    lock = threading.Lock()

    def grade(name, take, workdir, progress, done, fail_on=None):
        while (got := take()) is not None:
            i, sc = got
            with lock:
                taken.setdefault(name, []).append(sc.name)
            if sc.name == fail_on:
                raise RuntimeError(f"lab {name} broke on {sc.name}")
            time.sleep(0.02)
            done(i, [_row(sc.name)])

    monkeypatch.setattr(E, "_grade_in_one_lab", grade)
    return taken


def _scenarios():
    return [S.load(n) for n in S.shipped()]


def test_every_scenario_once_longest_first_rows_in_given_order(fake_labs, tmp_path):
    scs = _scenarios()
    rows = E._evaluate_in_labs(scs, tmp_path, lambda _: None, jobs=3)
    assert [r.scenario for r in rows] == [s.name for s in scs]
    graded = [n for names in fake_labs.values() for n in names]
    assert sorted(graded) == sorted(s.name for s in scs)
    assert len(fake_labs) == 3 and len(set(fake_labs)) == 3  # three labs, three names
    # the most expensive scenario is the first one any lab takes
    firsts = {names[0] for names in fake_labs.values()}
    assert max(scs, key=E.estimated_cost).name in firsts


def test_one_job_keeps_the_given_order_in_one_lab(fake_labs, tmp_path):
    scs = [S.load("slow-server"), S.load("baseline"), S.load("gfw")]
    rows = E._evaluate_in_labs(scs, tmp_path, lambda _: None, jobs=1)
    assert [r.scenario for r in rows] == ["slow-server", "baseline", "gfw"]
    assert list(fake_labs.values()) == [["slow-server", "baseline", "gfw"]]


def test_a_failing_lab_stops_the_others_and_raises(monkeypatch, fake_labs, tmp_path):
    grade = E._grade_in_one_lab
    monkeypatch.setattr(E, "_grade_in_one_lab",
                        lambda *a: grade(*a, fail_on="gfw"))
    scs = _scenarios()
    with pytest.raises(RuntimeError, match="broke on gfw"):
        E._evaluate_in_labs(scs, tmp_path, lambda _: None, jobs=2)
    graded = [n for names in fake_labs.values() for n in names]
    assert len(graded) < len(scs)  # nobody went on through the whole queue


def test_cost_ranks_penalty_boxes_and_vpn_waits_above_plain_scenarios():
    cost = {n: E.estimated_cost(S.load(n)) for n in ("gfw", "residual", "ip-blackhole", "baseline", "cdn")}
    assert cost["gfw"] == max(cost.values())
    assert cost["residual"] > cost["baseline"] and cost["ip-blackhole"] > cost["cdn"]
