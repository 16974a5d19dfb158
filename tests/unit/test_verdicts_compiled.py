"""The mypyc-compiled verdict engine: built, used, and judging exactly as its Python source does.

setup.py compiles ``analysis/verdicts`` with mypyc (same source; the build writes a stamp of the
sources it compiled). These tests fail when the build did not compile the engine (so CI never
tests only the Python fallback), compare compiled and Python verdicts record for record (the
Python source runs in a subprocess with ``CENSORSCOPE_PURE_PYTHON=1``), and check that a stale
build (a source edited since) is never used.
"""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import censorscope.analysis.verdicts as pkg
from censorscope.analysis.verdicts import engine
from censorscope.analysis.verdicts.engine import verdict_rows

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(pkg.__file__).resolve().parent
OPTED_OUT = bool(os.environ.get("CENSORSCOPE_PURE_PYTHON") or os.environ.get("CENSORSCOPE_NO_MYPYC"))


def _fast_paths_corpus() -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("_fp_for_compiled", Path(__file__).with_name(
        "test_verdicts_fast_paths.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._corpus()  # type: ignore[no-any-return]


def _lab_sample() -> list[dict[str, Any]]:
    with gzip.open(ROOT / "data" / "samples" / "lab-days.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


_ODD = [None, 0, 7, -1, 2.5, True, "", "x", "203.0.113.9", [], ["a"], {}, {"k": 1}, [None], [[1, 2]]]


def _confused(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """Copies with one to three values (anywhere in the record) replaced by a value of another type."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = copy.deepcopy(rng.choice(records))
        for _ in range(rng.randrange(1, 4)):
            node: Any = r
            for _depth in range(rng.randrange(1, 6)):
                keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node))) if isinstance(
                    node, list) else []
                if not keys:
                    break
                k = rng.choice(keys)
                child = node[k]
                if not isinstance(child, dict | list) or rng.random() < 0.3:
                    node[k] = copy.deepcopy(rng.choice(_ODD))
                    break
                node = child
        r["measurement_id"] = f"odd{i}"
        out.append(r)
    return out


def _outcomes(records: list[dict[str, Any]]) -> list[Any]:
    """Each record judged on its own: its rows, or that it raised."""
    out: list[Any] = []
    for r in records:
        try:
            out.append(verdict_rows([r]))
        except Exception:  # noqa: BLE001 - the outcome compared across engines
            out.append("raises")  # the exception type may differ (mypyc checks types on entry)
    return out


_CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
import censorscope.analysis.verdicts as pkg
from censorscope.analysis.verdicts import engine
assert pkg.ENGINE == "python" and engine.__file__.endswith(".py"), (pkg.ENGINE, engine.__file__)
import test_verdicts_compiled as t
batch, single = json.load(open(sys.argv[1]))
print(json.dumps([engine.verdict_rows(batch), t._outcomes(single)], default=str))
"""


def _python_engine(batch: list[dict[str, Any]], single: list[dict[str, Any]], tmp_path: Path) -> Any:
    src = tmp_path / "records.json"
    src.write_text(json.dumps([batch, single]))
    env = dict(os.environ, CENSORSCOPE_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", _CHILD.format(tests=str(Path(__file__).parent)), str(src)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.skipif(OPTED_OUT, reason="the Python source was asked for (CENSORSCOPE_PURE_PYTHON / NO_MYPYC)")
def test_the_engine_is_compiled_and_used() -> None:
    # fails when the build skipped mypyc (mypy missing from the build, a compile error): CI must
    # test the engine users get
    assert pkg.ENGINE == "compiled", (pkg.ENGINE, pkg._compiled_state())
    assert engine.__file__.endswith(".so"), engine.__file__
    assert (HERE / "_compiled_sources.json").is_file()


@pytest.mark.skipif(OPTED_OUT, reason="needs the compiled engine")
def test_compiled_judges_exactly_as_the_python_source(tmp_path: Path) -> None:
    corpus = _fast_paths_corpus() + _lab_sample()
    batch = json.loads(json.dumps(verdict_rows(corpus), default=str))
    single = _confused(corpus, 1200, seed=5)
    single_rows = json.loads(json.dumps(_outcomes(single), default=str))
    want_batch, want_single = _python_engine(corpus, single, tmp_path)
    assert len(batch) > 5000 and batch == want_batch
    assert single_rows == want_single
    # the confused records reach both engines' rules (most are judged, not rejected)
    assert sum(isinstance(x, list) for x in single_rows) > 900


def test_stale_or_missing_stamp_means_source(tmp_path: Path) -> None:
    assert pkg._compiled_state(tmp_path) == "absent"
    (tmp_path / "dns.py").write_text("X = 1\n")
    (tmp_path / "dns.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / "_compiled__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert "no readable" in pkg._compiled_state(tmp_path)
    import hashlib
    digest = hashlib.sha256(b"X = 1\n").hexdigest()
    (tmp_path / "_compiled_sources.json").write_text(json.dumps({"dns.py": digest}))
    assert pkg._compiled_state(tmp_path) == "compiled"
    (tmp_path / "dns.py").write_text("X = 2\n")  # edited after the build
    assert pkg._compiled_state(tmp_path) == "dns.py changed since the build"
    (tmp_path / "dns.py").unlink()
    assert pkg._compiled_state(tmp_path) == "dns.py is missing"


def test_python_source_when_asked(tmp_path: Path) -> None:
    code = ("import censorscope.analysis.verdicts as p, censorscope.analysis.verdicts.dns as d; "
            "print(p.ENGINE, d.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, CENSORSCOPE_PURE_PYTHON="1"))
    assert out.returncode == 0, out.stderr
    engine_name, path = out.stdout.split()
    assert engine_name == "python" and path.endswith("dns.py")


def test_a_malformed_record_is_inconclusive_not_a_crash() -> None:
    spec = importlib.util.spec_from_file_location("_golden_for_compiled", Path(__file__).with_name(
        "test_verdicts_golden.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    good = next(r for r in mod.golden_records() if r["probe"] == "web")
    bad = copy.deepcopy(good)
    bad["measurement_id"] = "bad"
    bad["observations"][0]["responses"] = 5  # a number where the list of DNS responses belongs
    rows = {r["measurement_id"]: r for r in verdict_rows([good, bad])}
    assert rows["bad"]["verdict"] == "inconclusive" and "malformed" in rows["bad"]["evidence"]
    assert rows[good["measurement_id"]]["verdict"] != "inconclusive" or "malformed" not in rows[
        good["measurement_id"]]["evidence"]
