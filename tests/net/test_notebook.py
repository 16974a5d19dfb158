"""docs/analysis.ipynb runs from a fresh kernel without errors, and the committed sample tells the story
its ground truth says (episodes within a day of the simulated ones, no blocking of never-censored sites).

Marked ``net``: the Jupyter kernel talks to nbclient over loopback TCP. No lab is needed: the sample
data set is committed under data/samples/ (made with ``censorscope lab samples``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "analysis.ipynb"
SAMPLES = ROOT / "data" / "samples"


def _truth() -> dict:
    return json.loads((SAMPLES / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def sample_verdicts() -> pd.DataFrame:
    import censorscope.analysis as analysis

    return analysis.verdicts(SAMPLES / "lab-days.jsonl.gz")


def _kernel_name(tmp_path: Path) -> str:
    """A kernelspec running this interpreter (the venv's python), installed under ``tmp_path``."""
    from ipykernel.kernelspec import install

    install(prefix=str(tmp_path / "jupyter"), kernel_name="censorscope-test")
    return "censorscope-test"


@pytest.mark.net
@pytest.mark.timeout(900)
def test_notebook_executes_without_errors(tmp_path):
    import nbformat
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    name = _kernel_name(tmp_path)
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "jupyter" / "share" / "jupyter" / "kernels")])
    spec = ksm.get_kernel_spec(name)
    assert spec.argv[0] in ("python", "python3", sys.executable)  # replaced by sys.executable on launch
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    client = NotebookClient(nb, km=km, timeout=600, kernel_name=name, allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "verdicts match the ground truth" in text
    assert "episodes on never-censored targets: none" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # heatmap, timeline, methods


def test_sample_is_small_and_documented():
    files = [p for p in SAMPLES.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024
    names = {p.name for p in files}
    assert {"lab-days.jsonl.gz", "ground_truth.json", "README.md", "ooni_web_connectivity.json"} <= names
    truth = _truth()
    assert len(truth["days"]) >= 8 and truth["runs_per_day"] >= 2


def test_sample_measurements_carry_simulated_and_real_times():
    from censorscope.analysis.records import iter_records

    truth = _truth()
    epoch = pd.Timestamp(truth["simulated_epoch"])
    seen_days = set()
    for m in iter_records(SAMPLES / "lab-days.jsonl.gz"):
        ann = m["annotations"]
        day = ann["simulated_day"]
        seen_days.add(day)
        t = pd.Timestamp(m["measurement_start_time"])
        assert (t.floor("D") - epoch).days + 1 == day
        assert ann["real_start_time"] != m["measurement_start_time"] and pd.Timestamp(ann["real_start_time"])
        assert ann["real_measurement_id"] != m["measurement_id"]
        assert m["measurement_id"].startswith(t.strftime("%Y%m%dT%H%M%S"))
        assert m["campaign"] == "lab-samples"
    assert sorted(seen_days) == truth["days"]


def test_sample_verdicts_match_ground_truth(sample_verdicts):
    truth = _truth()
    epoch = pd.Timestamp(truth["simulated_epoch"])
    by = {(s["target"], int(d)): t for s in truth["sites"] for d, t in s["by_day"].items()}
    v = sample_verdicts
    days = (pd.to_datetime(v["measurement_start_time"], utc=True).dt.floor("D") - epoch).dt.days + 1
    false_blocked = []
    matches = 0
    for (_, row), day in zip(v.iterrows(), days, strict=True):
        t = by[(row["input"], day)]
        if row["verdict"] == "blocked" and t["verdict"] != "blocked":
            false_blocked.append((row["input"], day, row["evidence"]))
        matches += row["verdict"] == t["verdict"] and (t["verdict"] != "blocked" or row["method"] == t["method"])
    assert not false_blocked
    assert matches / len(v) >= 0.95, f"{matches}/{len(v)} verdicts match the sample's ground truth"


def test_sample_episodes_match_ground_truth_within_a_day(sample_verdicts):
    from censorscope.analysis.episodes import episodes

    truth = _truth()
    ep = episodes(sample_verdicts)
    expected = {s["target"]: s["episode"] for s in truth["sites"] if s["episode"]}
    found = {}
    for _, e in ep.iterrows():
        assert e["input"] in expected, f"episode on a never-censored target: {e['input']}"
        assert e["input"] not in found, f"blocking of {e['input']} split into several episodes"
        found[e["input"]] = e
    assert set(found) == set(expected)
    for target, want in expected.items():
        e = found[target]
        assert abs((e["start"] - pd.Timestamp(want["start"], tz="UTC")).days) <= 1, target
        if want["end"] is None:
            assert pd.isna(e["end"]), f"{target}: still blocked at the end of the sample"
        else:
            assert not pd.isna(e["end"]), f"{target}: the lifting of blocking was not detected"
            assert abs((e["end"] - pd.Timestamp(want["end"], tz="UTC")).days) <= 1, target
    methods = {s["target"]: s["by_day"][str(truth["days"][-1] if s["last_day"] is None else s["last_day"])]["method"]
               for s in truth["sites"] if s["episode"]}
    assert {t: found[t]["method"] for t in found} == methods
