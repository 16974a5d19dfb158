"""Censor configuration: load and validate the JSON the lab hands the censor.

::

    {
      "behaviours": [{"behaviour": "dns_injection", "names": ["blocked.example"]}, ...],
      "interfaces": {"client_side": "cli0", "server_side": "up0"},
      "log": "/path/to/actions.jsonl",
      "seed": 1,                      # optional: reproducible probabilistic decisions
      "state_dir": "/path/to/state"   # optional: where the censor CA lives (default <config>.state)
    }

``load_config`` raises ``ConfigError`` naming the behaviour and parameter at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .params import ConfigError, build_params
from .registry import BEHAVIOURS

__all__ = ["BehaviourConfig", "CensorConfig", "ConfigError", "load_config", "load_config_file"]

TOP_LEVEL = {"behaviours", "interfaces", "log", "seed", "state_dir"}


@dataclass(frozen=True)
class BehaviourConfig:
    """One configured behaviour: its registered name and validated parameters."""

    name: str
    params: Any


@dataclass(frozen=True)
class CensorConfig:
    """A validated censor configuration."""

    behaviours: tuple[BehaviourConfig, ...]
    client_side: str = "cli0"
    server_side: str = "up0"
    log: str | None = None
    seed: int | None = None
    state_dir: str | None = None


def load_config(raw: dict[str, Any]) -> CensorConfig:
    """Validate ``raw`` (the parsed JSON) into a ``CensorConfig``."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a JSON object")
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_LEVEL))}")
    items = raw.get("behaviours", [])
    if not isinstance(items, list):
        raise ConfigError("behaviours must be a list")
    behaviours = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("behaviour"), str):
            raise ConfigError(f"behaviours[{i}]: an object with a 'behaviour' name is required")
        name = item["behaviour"]
        cls = BEHAVIOURS.get(name)
        if cls is None:
            raise ConfigError(f"behaviours[{i}]: unknown behaviour {name!r}; known: {', '.join(sorted(BEHAVIOURS))}")
        params = {k: v for k, v in item.items() if k != "behaviour"}
        behaviours.append(BehaviourConfig(name, build_params(f"behaviours[{i}] {name}", cls.Params, params)))
    ifaces = raw.get("interfaces", {})
    if not isinstance(ifaces, dict) or set(ifaces) - {"client_side", "server_side"}:
        raise ConfigError("interfaces: an object with client_side and server_side interface names")
    for key in ("log", "state_dir"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigError(f"{key} must be a path string")
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError("seed must be an integer")
    return CensorConfig(
        behaviours=tuple(behaviours),
        client_side=str(ifaces.get("client_side", "cli0")),
        server_side=str(ifaces.get("server_side", "up0")),
        log=raw.get("log"),
        seed=seed,
        state_dir=raw.get("state_dir"),
    )


def load_config_file(path: str | Path) -> CensorConfig:
    """Read and validate a JSON configuration file."""
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    return load_config(raw)
