"""C extensions of censorscope (everything else is configured in pyproject.toml).

Why a setup.py: setuptools still marks ``ext-modules`` in pyproject.toml as
experimental; ``Extension`` here is its stable interface. Each extension is a
fast path with a pure-Python fallback and reference (the tests compare them;
tests/unit/test_cext_built.py fails when an extension is not built).

The verdict engine (``analysis/verdicts``, except its ``__init__``)
is also compiled with mypyc from its unchanged Python source: same code, about
40 % less CPU per measurement (docs/analysis.md, "Speed"). The build writes a
stamp of the sources it compiled; ``censorscope.analysis.verdicts`` runs the
Python source instead when the sources changed since (an edited rule is never
shadowed by a stale build) or when ``CENSORSCOPE_PURE_PYTHON=1``.
``CENSORSCOPE_NO_MYPYC=1`` (or mypy missing from the build environment) builds
without compiling them.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
#: the verdict modules compiled with mypyc: all but the package itself (it picks compiled or source)
VERDICTS = ROOT / "analysis" / "verdicts"
NOT_COMPILED = {"__init__.py"}
#: the package of the shared library and of the stamp (censorscope.analysis.verdicts._compiled__mypyc)
GROUP = "censorscope.analysis.verdicts._compiled"
STAMP = "_compiled_sources.json"
#: the top-level folders as the packages they are installed as (pyproject.toml's package-dir)
LAYOUT = {"__init__.py": "censorscope_root/__init__.py", "analysis": "analysis", "measure": "measure",
          "probes": "probes", "lab": "lab", "data": "data"}


def verdict_sources() -> list[Path]:
    """The verdict modules mypyc compiles."""
    return sorted(p for p in VERDICTS.glob("*.py") if p.name not in NOT_COMPILED)


def source_digests() -> dict[str, str]:
    """module file name -> SHA-256 of its source (what the stamp records and the package checks)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in verdict_sources()}


def _staged() -> Path:
    """A tree where the folders sit under ``censorscope/`` as installed (symlinks), so that mypyc
    names the modules censorscope.analysis.verdicts.* and resolves their imports."""
    stage = ROOT / "build" / "mypyc-src" / "censorscope"
    stage.mkdir(parents=True, exist_ok=True)
    for name, target in LAYOUT.items():
        link = stage / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT / target)
    return stage.parent


def mypyc_extensions() -> list[Extension]:
    """mypyc's extensions for the verdict engine, or none (with the reason on stderr)."""
    if os.environ.get("CENSORSCOPE_NO_MYPYC"):
        print("setup.py: CENSORSCOPE_NO_MYPYC set: the verdict engine stays pure Python", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("setup.py: mypy (mypyc) not installed: the verdict engine stays pure Python", file=sys.stderr)
        return []
    stage = _staged()
    os.environ["MYPYPATH"] = str(stage)
    paths = [str(stage / "censorscope" / "analysis" / "verdicts" / p.name) for p in verdict_sources()]
    return mypycify(["--ignore-missing-imports", "--follow-imports=silent", *paths],
                    opt_level="3", group_name=GROUP)


class BuildExt(build_ext):
    """build_ext that, once the extensions are built, writes the stamp of the verdict sources
    compiled next to them (read by censorscope.analysis.verdicts)."""

    def run(self) -> None:
        digests = source_digests()
        super().run()
        if any(ext.name.startswith(GROUP) for ext in self.extensions):
            where = Path(self.get_ext_fullpath(GROUP + "__mypyc")).parent
            (where / STAMP).write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")

setup(
    ext_modules=[
        # optional: without a C compiler (or Python's headers) the install still works, on the Python paths
        Extension("censorscope.probes.wire._dnsbulk_c", ["probes/wire/_dnsbulk_c.c"], optional=True),
        # epoll, sendmmsg and recvmmsg: Linux only (elsewhere the worker runs the Python engine)
        *([Extension("censorscope.measure._dns_bulk_engine", ["measure/_dns_bulk_engine.c"], optional=True)]
          if sys.platform.startswith("linux") else []),
        *mypyc_extensions(),
    ],
    cmdclass={"build_ext": BuildExt},
)
