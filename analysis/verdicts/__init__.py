"""Verdicts: what stored measurements show about censorship (DESIGN.md §4).

``verdicts(measurements) -> DataFrame`` judges a batch; ``verdict_for(m,
related)`` judges one measurement; ``register(probe, rule)`` adds a rule.
One module per technique family (dns, tcp, tls, http, throughput, vpn, quic,
fet; web composes them); rules are documented in docs/verdicts.md and carry
:data:`RULES_VERSION`. pandas is imported only when a DataFrame is built.

This module is also callable: ``censorscope.analysis.verdicts(measurements)``
is ``censorscope.analysis.verdicts.verdicts(measurements)``, so the package
name and the function name never shadow each other.
"""

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
#: written by setup.py's build next to the compiled modules: source file name -> SHA-256 it compiled
_STAMP = "_compiled_sources.json"


def _compiled_state(here: Path = _HERE) -> str:
    """"compiled" when mypyc-built modules are here and match their sources; "absent" when none are
    built; else why they must not be used (stale: a source changed since the build)."""
    built = {p.name.split(".", 1)[0] for p in here.glob("*.so")} - {"_compiled__mypyc"}
    if not built:
        return "absent"
    try:
        stamp = json.loads((here / _STAMP).read_text())
    except (OSError, ValueError):
        return f"no readable {_STAMP} beside the compiled modules"
    for name in sorted(built):
        source = here / f"{name}.py"
        try:
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            return f"{source.name} is missing"
        if stamp.get(source.name) != digest:
            return f"{source.name} changed since the build"
    return "compiled"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports this package's modules from their .py source even where a compiled module sits beside."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__:
            return None
        source = _HERE / f"{name}.py"
        return importlib.util.spec_from_file_location(fullname, source) if source.is_file() else None


#: how the engine runs: "compiled" (mypyc), "python" (no build, asked for, or a stale build)
ENGINE = "python"
_state = _compiled_state()
if _state == "compiled" and not os.environ.get("CENSORSCOPE_PURE_PYTHON"):
    ENGINE = "compiled"
elif _state != "absent":
    # a stale build would judge with the old rules: run the source (the same code, slower)
    if not os.environ.get("CENSORSCOPE_PURE_PYTHON"):
        warnings.warn(f"censorscope: compiled verdict modules not used ({_state}); running the Python "
                      "source. Rebuild with: pip install -e .", RuntimeWarning, stacklevel=2)
    sys.meta_path.insert(0, _SourceFirst())

from censorscope.analysis.verdicts.core import RULES_VERSION, Measurement, Verdict  # noqa: E402 (after the finder)
from censorscope.analysis.verdicts.engine import (  # noqa: E402 (after the finder)
    COLUMNS,
    RULES,
    register,
    verdict_for,
    verdict_rows,
    verdicts,
)

__all__ = ["COLUMNS", "ENGINE", "RULES", "RULES_VERSION", "Measurement", "Verdict", "register", "verdict_for",
           "verdict_rows", "verdicts"]


class _CallableModule(types.ModuleType):
    """This package, callable as its ``verdicts`` function."""

    def __call__(self, measurements: Any) -> Any:
        return verdicts(measurements)


sys.modules[__name__].__class__ = _CallableModule
