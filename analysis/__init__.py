"""censorscope.analysis: from stored measurements to verdicts, patterns over time and reports.

Everything takes and returns pandas DataFrames (columns in docs/analysis.md)::

    load(paths)                 one row per measurement (censorscope JSONL/Parquet, OONI files)
    observations(paths)         one row per observation
    verdicts(measurements)      ok / down / blocked / inconclusive, with method and evidence
    blocking_matrix(v, by, freq), method_mix(v), first_last_blocked(v), compare_vantages(v)
    episodes(v)                 when blocking started and ended (CUSUM change points)
    plots.heatmap / timeline / method_breakdown   matplotlib Figures

``censorscope.analysis.export.export(paths, fmt, out)`` writes Parquet, CSV or
OONI's format (not re-exported here: the name would hide its module).

``verdicts`` is the verdict engine's subpackage made callable, so
``censorscope.analysis.verdicts(...)`` and ``censorscope.analysis.verdicts.dns``
both work.
"""

import importlib
from typing import Any

from censorscope.analysis import verdicts
from censorscope.analysis.aggregate import blocking_matrix, compare_vantages, first_last_blocked, method_mix
from censorscope.analysis.episodes import episodes
from censorscope.analysis.tables import load, observations
from censorscope.analysis.verdicts import RULES_VERSION, Verdict, register, verdict_for

__all__ = [
    "RULES_VERSION", "Verdict", "blocking_matrix", "compare_vantages", "episodes", "first_last_blocked",
    "load", "method_mix", "observations", "plots", "register", "verdict_for", "verdicts",
]


def __getattr__(name: str) -> Any:
    # matplotlib costs seconds to import: load the plots module only when it is used
    if name == "plots":
        return importlib.import_module("censorscope.analysis.plots")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
