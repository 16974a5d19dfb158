"""C extensions of censorscope (everything else is configured in pyproject.toml).

Why a setup.py: setuptools still marks ``ext-modules`` in pyproject.toml as
experimental; ``Extension`` here is its stable interface. Each extension is a
fast path with a pure-Python fallback and reference (the tests compare them;
tests/unit/test_cext_built.py fails when an extension is not built).
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("censorscope.probes.wire._dnsbulk_c", ["probes/wire/_dnsbulk_c.c"]),
        # epoll, sendmmsg and recvmmsg: Linux only (elsewhere the worker runs the Python engine)
        *([Extension("censorscope.measure._dns_bulk_engine", ["measure/_dns_bulk_engine.c"])]
          if sys.platform.startswith("linux") else []),
    ],
)
