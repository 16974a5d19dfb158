"""censorscope.analysis: judge stored measurements (verdicts) and report them.

``censorscope.analysis.verdicts(measurements)`` returns the verdict table (a
pandas DataFrame; pandas is imported on use). ``verdicts`` is the verdict
engine's subpackage and is callable as its main function, so
``censorscope.analysis.verdicts(...)`` and ``censorscope.analysis.verdicts.dns``
both work.
"""

from censorscope.analysis import verdicts
from censorscope.analysis.verdicts import RULES_VERSION, Verdict, register, verdict_for

__all__ = ["RULES_VERSION", "Verdict", "register", "verdict_for", "verdicts"]
