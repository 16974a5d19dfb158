"""Campaign files: what to measure, how, and where to store it (TOML).

A campaign file (documented with an example in docs/campaigns.md)::

    name = "weekly"                       # stored as each measurement's `campaign`
    [targets]   lists = [...], urls = [...], strict = false
    [run]       probes, repeat, concurrency, per_server, timeout, seed, out,
                resolvers, store_vantage_ip
    [vantage]   cc, asn, network
    [control]   url, token
    [confirm]   enabled, attempts, spacing, innocuous_sni, no_dns_server, slow_ratio
                (confirmation re-tests; checked by censorscope.measure.confirm)
    [probe.NAME]  options of probe NAME (fields of its Options dataclass)

Every key is checked: an unknown one is a ``ConfigError`` that names it (a
typo must not silently fall back to a default). Relative list paths and
``out`` are relative to the campaign file's folder. Command-line flags
override the file (``Campaign.override``).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from censorscope.measure.records import Vantage
from censorscope.measure.targets import DEFAULT_LIST
from censorscope.probes.errors import ConfigError
from censorscope.probes.net import split_host_port

DEFAULT_PROBES = ("web",)
DEFAULT_OUT = "results"

_SECTIONS: dict[str, set[str]] = {
    "": {"name", "targets", "run", "vantage", "control", "confirm", "probe"},
    "targets": {"lists", "urls", "strict"},
    "run": {
        "probes", "repeat", "concurrency", "per_server", "timeout", "seed", "out", "resolvers",
        "store_vantage_ip",
    },
    "vantage": {"cc", "asn", "network"},
    "control": {"url", "token"},
}


@dataclass
class Campaign:
    """A fully resolved campaign (file + flags)."""

    name: str | None = None
    lists: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    strict: bool = False
    probes: list[str] = field(default_factory=lambda: list(DEFAULT_PROBES))
    repeat: int = 1
    concurrency: int = 32
    per_server: int = 4
    timeout: float | None = None  # per-operation timeout given to probes; None = each probe's default
    seed: int | None = None
    out: str = DEFAULT_OUT
    resolvers: list[str] = field(default_factory=list)
    store_vantage_ip: bool = False
    vantage: Vantage = field(default_factory=Vantage)
    control_url: str | None = None
    control_token: str | None = None
    confirm: dict[str, Any] | None = None  # the [confirm] table; None: no confirmation re-tests
    probe_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> Campaign:
        """Check values (not just types); return self. Raises ConfigError."""
        if not self.lists and not self.urls:
            raise ConfigError("no targets: give --list FILE (or 'default') or targets in the campaign file")
        if not self.probes:
            raise ConfigError("no probes selected")
        for name, value, low in (("repeat", self.repeat, 1), ("concurrency", self.concurrency, 1),
                                 ("per_server", self.per_server, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, not {value!r}")
        if self.timeout is not None and (not isinstance(self.timeout, int | float) or self.timeout <= 0):
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError(f"seed must be an integer, not {self.seed!r}")
        for r in self.resolvers:
            try:
                split_host_port(r, 53)
            except ValueError as e:
                raise ConfigError(f"bad resolver {r!r}: {e}") from None
        if self.vantage.cc is not None and not re.fullmatch(r"[A-Z]{2}", self.vantage.cc):
            raise ConfigError(f"vantage cc must be a two-letter country code (ISO 3166), not {self.vantage.cc!r}")
        if self.vantage.asn is not None and not re.fullmatch(r"AS\d+", self.vantage.asn):
            raise ConfigError(f"vantage asn must look like AS64500, not {self.vantage.asn!r}")
        if self.control_token and not self.control_url:
            raise ConfigError("a control token was given without a control URL")
        return self

    def override(self, **flags: Any) -> Campaign:
        """A copy with every flag that is not None applied (flags beat the file)."""
        changes: dict[str, Any] = {}
        vantage = dataclasses.replace(self.vantage)
        for key, value in flags.items():
            if value is None:
                continue
            if key in ("cc", "asn", "network"):
                setattr(vantage, key, value)
            elif key in {f.name for f in dataclasses.fields(self)}:
                changes[key] = value
            else:
                raise KeyError(key)
        return dataclasses.replace(self, vantage=_normalise_vantage(vantage), **changes)

    def to_dict(self) -> dict[str, Any]:
        """The campaign as stored in a run's sidecar. The control token is NOT stored."""
        d = dataclasses.asdict(self)
        d["vantage"] = {k: v for k, v in d["vantage"].items() if k in ("cc", "asn", "network")}
        d["control_token"] = None
        d["control_token_set"] = bool(self.control_token)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Campaign:
        """Inverse of ``to_dict`` (the token must be supplied again)."""
        d = dict(d)
        d.pop("control_token_set", None)
        vantage = Vantage(**d.pop("vantage", {}))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"run metadata has unknown campaign keys: {', '.join(sorted(unknown))}")
        return cls(vantage=vantage, **d)


def _normalise_vantage(v: Vantage) -> Vantage:
    if v.cc is not None:
        v.cc = str(v.cc).upper()
    if v.asn is not None:
        asn = str(v.asn).upper()
        v.asn = asn if asn.startswith("AS") else f"AS{asn}"
    return v


def _check_keys(table: dict[str, Any], section: str, where: str) -> None:
    unknown = set(table) - _SECTIONS[section]
    if unknown:
        label = f"[{section}]" if section else "top level"
        allowed = ", ".join(sorted(_SECTIONS[section]))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} in {label} (allowed: {allowed})")


def _typed(value: Any, kind: type | tuple[type, ...], key: str, where: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: {key} must be {names}, not {type(value).__name__}")
    return value


def _str_list(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return list(value)


def load_campaign(path: str | Path) -> Campaign:
    """Read and check a campaign TOML file (not yet validated for completeness)."""
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"campaign file {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: invalid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"campaign file {path}: {e}") from None
    _check_keys(data, "", where)
    base = path.parent
    c = Campaign()
    if "name" in data:
        c.name = _typed(data["name"], str, "name", where)
    for section in ("targets", "run", "vantage", "control"):
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        _check_keys(data.get(section, {}), section, where)

    t = data.get("targets", {})
    c.lists = [
        s if s == DEFAULT_LIST or Path(s).is_absolute() else str(base / s)
        for s in _str_list(t.get("lists", []), "targets.lists", where)
    ]
    c.urls = _str_list(t.get("urls", []), "targets.urls", where)
    c.strict = _typed(t.get("strict", False), bool, "targets.strict", where)

    r = data.get("run", {})
    if "probes" in r:
        c.probes = _str_list(r["probes"], "run.probes", where)
    for key in ("repeat", "concurrency", "per_server", "seed"):
        if key in r:
            setattr(c, key, _typed(r[key], int, f"run.{key}", where))
    if "timeout" in r:
        c.timeout = float(_typed(r["timeout"], (int, float), "run.timeout", where))
    if "out" in r:
        out = Path(_typed(r["out"], str, "run.out", where))
        c.out = str(out if out.is_absolute() else base / out)
    if "resolvers" in r:
        c.resolvers = _str_list(r["resolvers"], "run.resolvers", where)
    c.store_vantage_ip = _typed(r.get("store_vantage_ip", False), bool, "run.store_vantage_ip", where)

    v = data.get("vantage", {})
    c.vantage = _normalise_vantage(Vantage(**{k: str(_typed(v[k], (str, int), f"vantage.{k}", where)) for k in v}))

    ctl = data.get("control", {})
    c.control_url = _typed(ctl["url"], str, "control.url", where) if "url" in ctl else None
    c.control_token = _typed(ctl["token"], str, "control.token", where) if "token" in ctl else None

    if "confirm" in data:
        if not isinstance(data["confirm"], dict):
            raise ConfigError(f"{where}: [confirm] must be a table")
        from censorscope.measure.confirm import ConfirmPolicy  # lazy: confirm imports the runner

        ConfirmPolicy.from_table(data["confirm"], f"{where}: [confirm]")
        c.confirm = dict(data["confirm"])

    probe_tables = data.get("probe", {})
    if not isinstance(probe_tables, dict) or not all(isinstance(x, dict) for x in probe_tables.values()):
        raise ConfigError(f"{where}: [probe.NAME] sections must be tables of probe options")
    c.probe_options = {k: dict(v) for k, v in probe_tables.items()}
    return c
