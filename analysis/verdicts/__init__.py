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

import sys
import types
from typing import Any

from censorscope.analysis.verdicts.core import RULES_VERSION, Measurement, Verdict
from censorscope.analysis.verdicts.engine import COLUMNS, RULES, register, verdict_for, verdict_rows, verdicts

__all__ = ["COLUMNS", "RULES", "RULES_VERSION", "Measurement", "Verdict", "register", "verdict_for",
           "verdict_rows", "verdicts"]


class _CallableModule(types.ModuleType):
    """This package, callable as its ``verdicts`` function."""

    def __call__(self, measurements: Any) -> Any:
        return verdicts(measurements)


sys.modules[__name__].__class__ = _CallableModule
