"""Lab fixtures: one lab for the whole session, switched between scenarios per test.

- ``lab_session``: a ``Lab`` built once (name ``t<pid>``, unique per test process),
  started with the ``baseline`` scenario and always torn down. When the lab cannot
  be built (not root, a daemon missing, ...) every test using it FAILS with the
  reason: lab tests never skip.
- ``use_scenario``: ``use_scenario("dns-injection")`` (a shipped name, a path or a
  ``Scenario``) reconfigures servers and censor in place (no new namespaces) and
  returns the lab (``fresh=True`` reloads even an unchanged scenario, which also
  clears the censor's state, e.g. residual penalty boxes). The next test starts from whatever it sets, so tests that need
  a particular scenario always ask for it.
- ``fresh_lab_name``: a unique name for tests that build their own labs; anything
  left under that name is torn down afterwards.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from censorscope.lab import scenario as scenario_mod
from censorscope.lab import topology

_counter = itertools.count()


def _build_failure(what: str, error: BaseException) -> None:
    pytest.fail(f"the lab cannot be built ({what}): {type(error).__name__}: {error}", pytrace=False)


@pytest.fixture(scope="session")
def lab_session():
    from censorscope.lab.lab import Lab

    name = f"t{os.getpid()}"
    lab = None
    try:
        topology.require_root()
        lab = Lab(name)
        lab.up(scenario_mod.load("baseline"))
    except BaseException as e:  # noqa: BLE001 - reported as a failure, never a skip
        if lab is not None:
            lab.down()
        _build_failure(f"lab {name}", e)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def use_scenario(lab_session):
    def switch(which: str | Path | scenario_mod.Scenario, *, fresh: bool = False):
        if isinstance(which, scenario_mod.Scenario):
            sc = which
        elif isinstance(which, Path) or str(which).endswith(".toml"):
            sc = scenario_mod.load_file(which)
        else:
            sc = scenario_mod.load(str(which))
        if fresh or lab_session.scenario is None or lab_session.scenario != sc:
            lab_session.switch(sc)
        return lab_session

    return switch


@pytest.fixture
def fresh_lab_name():
    name = f"u{os.getpid() % 100000}x{next(_counter)}"
    yield name
    if topology.geteuid() == 0 and topology.list_labs().count(name):
        topology.teardown(name)
