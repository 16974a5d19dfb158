"""``censorscope lab samples`` in a real lab: two tiny simulated days (needs root; fails, never skips,
when the lab cannot be built)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from censorscope.lab import samples


@pytest.mark.lab
@pytest.mark.timeout(900)
def test_generate_two_days(tmp_path):
    from censorscope.analysis import verdicts

    doc = samples.generate(tmp_path, days=[3, 6], runs=1)  # raises (test fails) when no lab can be built
    assert doc["days"] == [3, 6]
    assert json.loads((tmp_path / samples.TRUTH_FILE).read_text())["days"] == [3, 6]
    g = doc["lab_grading"]
    assert g["runs"] == 2 and g["rows"] == 2 * len(samples.SCHEDULE)
    assert not [m for m in g["mismatches"] if m["verdict"] == "blocked" and m["expected"] != "blocked"]

    v = verdicts(tmp_path / samples.MEASUREMENTS_FILE)
    v["day"] = (pd.to_datetime(v["measurement_start_time"], utc=True).dt.floor("D")
                - pd.Timestamp(samples.SIM_EPOCH)).dt.days + 1
    assert set(v["day"]) == {3, 6}
    got = {(r.input, r.day): (r.verdict, r.method) for r in v.itertuples()}
    # day 3: nothing censored yet; day 6: DNS injection and SNI resets are on
    assert got[("https://chat.example.com/", 3)][0] == "ok"
    assert got[("https://chat.example.com/", 6)] == ("blocked", "dns.injection")
    assert got[("https://forbidden.example.org/", 3)][0] == "ok"
    assert got[("https://forbidden.example.org/", 6)] == ("blocked", "tls.sni_reset")
    assert got[("https://innocuous.example.org/", 6)][0] == "ok"
    assert got[("https://dead.example.org/", 3)][0] == "down"
    assert got[("https://dark.example.net/", 6)][0] == "ok"  # blackholed only from day 7
