"""One running lab: topology + servers + censor, switched between scenarios.

``Lab(name).up(scenario)`` builds the namespaces, starts the servers and (when
the scenario has ``[[censor]]`` tables) the censor; ``switch(scenario)``
reconfigures servers and censor in place (no new namespaces, only changed
daemons restart); ``down()`` removes everything. ``Lab`` is a context manager.

The censor contract (see docs/lab.md and docs/censor.md): the censor runs in
the ``censor`` namespace as ``python -m censorscope.lab.censor --config
<state>/censor/censor.json``; it installs and removes its own rules there,
writes ``censor.json.ready`` (JSON with ``generation``: 1 at start, +1 per
successful reload) once its rules are live, and reloads on SIGHUP.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from censorscope.lab.scenario import Scenario
from censorscope.lab.servers import Servers, lab_env
from censorscope.lab.topology import Topology
from censorscope.lab.vpn_servers import VpnServers
from censorscope.probes.errors import LabError

CENSOR_READY_TIMEOUT = 30.0


def _validate_censor(cfg: dict[str, Any]) -> None:
    from censorscope.lab.censor.config import ConfigError, load_config

    try:
        load_config(cfg)
    except ConfigError as e:
        raise LabError(f"censor configuration: {e}") from None


class Lab:
    """A lab you can bring up, switch between scenarios and tear down."""

    def __init__(self, name: str, *, keep: bool = False) -> None:
        self.topo = Topology(name, keep=keep)
        self.servers = Servers(self.topo)
        self.vpn = VpnServers(self.topo, self.servers.cert_for, self.servers.ca_file)
        self.scenario: Scenario | None = None
        self.censor_generation = 0
        self.timings: dict[str, float] = {}

    @property
    def name(self) -> str:
        return self.topo.name

    @property
    def state(self) -> Path:
        """The lab's state directory."""
        return self.topo.dir

    @property
    def ca_file(self) -> Path:
        """The lab CA (trusted by lab processes only)."""
        return self.servers.ca_file

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for processes run inside the lab (lab CA trusted)."""
        return lab_env(self.state, base)

    # --- lifecycle ----------------------------------------------------------
    def up(self, scenario: Scenario) -> Lab:
        """Build everything and apply ``scenario``."""
        t0 = time.monotonic()
        self.topo.up()
        try:
            self.timings["topology"] = time.monotonic() - t0
            self._apply(scenario)
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - t0
        return self

    def switch(self, scenario: Scenario) -> None:
        """Reconfigure servers and censor for ``scenario`` without rebuilding the lab."""
        t0 = time.monotonic()
        self._apply(scenario)
        self.timings["switch"] = time.monotonic() - t0

    def _apply(self, scenario: Scenario) -> None:
        t0 = time.monotonic()
        self.servers.apply(scenario)
        self.vpn.apply(scenario.vpn)  # real VPN servers only when the scenario names them
        self.timings["servers"] = time.monotonic() - t0
        t1 = time.monotonic()
        self._censor(scenario)
        self.timings["censor"] = time.monotonic() - t1
        self.scenario = scenario
        self.topo.update_state(scenario=scenario.name, scenario_source=scenario.source,
                               ca_file=str(self.ca_file))

    def down(self) -> None:
        """Tear everything down (idempotent)."""
        self.topo.down()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- censor -------------------------------------------------------------
    @property
    def censor_dir(self) -> Path:
        return self.state / "censor"

    def censor_config(self, scenario: Scenario) -> dict[str, Any]:
        """The censor's configuration for ``scenario`` (written as censor.json; format in docs/censor.md)."""
        return {
            "behaviours": [dict(c) for c in scenario.censor],
            "interfaces": {"client_side": "cli0", "server_side": "up0"},
            "log": str(self.censor_dir / "actions.jsonl"),
            "state_dir": str(self.censor_dir / "state"),
            "seed": 1,
        }

    def _censor(self, scenario: Scenario) -> None:
        running = "censor" in self.topo.procs and self.topo.procs["censor"].poll() is None
        if not scenario.censor and not running:
            return
        cfg = self.censor_config(scenario)
        _validate_censor(cfg)  # a bad table must fail here, not as a silent "reload_failed"
        self.censor_dir.mkdir(parents=True, exist_ok=True)
        conf = self.censor_dir / "censor.json"
        tmp = conf.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg, indent=1))
        os.replace(tmp, conf)
        ready = Path(str(conf) + ".ready")
        if running:
            self.censor_generation += 1
            self.topo.procs["censor"].send_signal(signal.SIGHUP)
        else:
            self.censor_generation = 1
            ready.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "censorscope.lab.censor", "--config", str(conf)]
            self.topo.spawn("censor", "censor", argv, log=self.censor_dir / "censor.out", env=self.env())
        self._wait_censor(ready, self.censor_generation)

    def _wait_censor(self, ready: Path, generation: int) -> None:
        deadline = time.monotonic() + CENSOR_READY_TIMEOUT
        p = self.topo.procs["censor"]
        while time.monotonic() < deadline:
            try:
                if json.loads(ready.read_text()).get("generation") == generation:
                    return
            except (OSError, ValueError):
                pass
            if p.poll() is not None:
                break
            time.sleep(0.01)
        tail = ""
        out = self.censor_dir / "censor.out"
        if out.exists():
            tail = " | ".join(out.read_text(errors="replace").strip().splitlines()[-5:])
        state = f"exited with {p.returncode}" if p.poll() is not None else f"not ready after {CENSOR_READY_TIMEOUT:g} s"
        raise LabError(f"censor {state} (expected generation {generation}): {tail or 'no output'}")

    # --- running things inside ------------------------------------------------
    def exec_argv(self, role: str, argv: list[str]) -> list[str]:
        """``argv`` run inside namespace ``role`` (lab resolv.conf bind-mounted)."""
        return self.topo.argv(role, argv)
