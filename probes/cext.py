"""Optional C extensions: each is a fast path beside a pure-Python reference (setup.py builds them)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def optional(module: str) -> ModuleType | None:
    """The C extension ``module``, or None when it is not built or ``CENSORSCOPE_NO_CEXT=1`` asks for
    the Python paths."""
    if os.environ.get("CENSORSCOPE_NO_CEXT") == "1":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
