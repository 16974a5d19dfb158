"""``censorscope probe NAME TARGET``: run one probe once and show what it saw.

One subcommand per registered probe, generated from the probe module's
``Options`` dataclass: each field becomes ``--field-name`` (help and choices
from the field's metadata). ``--json`` prints exactly one measurement object,
the same shape as a stored line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import types
import typing
from typing import Any

import click

from censorscope.measure.records import Vantage, build_measurement
from censorscope.probes import registry
from censorscope.probes.net import Net


def _click_type(tp: Any, meta: dict[str, Any]) -> tuple[Any, bool]:
    """The click type of a dataclass field type, and whether it is a flag."""
    if "choices" in meta:
        return click.Choice(list(meta["choices"])), False
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else str
        origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return str, False  # comma-separated on the command line
    if tp is bool:
        return bool, True
    if tp in (int, float, str):
        return tp, False
    return str, False


def options_from_dataclass(cls: type) -> list[click.Option]:
    """click options for every field of an Options dataclass."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        if meta.get("cli") is False:
            continue
        ctype, is_flag = _click_type(hints[f.name], meta)
        default = None if f.default is dataclasses.MISSING else f.default
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = None
        name = "--" + f.name.replace("_", "-")
        decl = [f"{name}/--no-{f.name.replace('_', '-')}"] if is_flag else [name]
        out.append(
            click.Option(
                [*decl, f.name], type=ctype, default=default, is_flag=is_flag if is_flag else None,
                show_default=default not in (None, False), help=meta.get("help", ""),
            )
        )
    return out


def make_options(cls: type, values: dict[str, Any]) -> Any:
    """Build an Options instance from parsed CLI values (lists are comma-separated)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values or values[f.name] is None:
            continue
        v = values[f.name]
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) else []
        is_list = typing.get_origin(tp) is list or any(typing.get_origin(a) is list for a in args)
        if is_list and isinstance(v, str):
            v = [x.strip() for x in v.split(",") if x.strip()]
        kwargs[f.name] = v
    return cls(**kwargs)


async def run_probe(module: types.ModuleType, target: str, net: Net, options: Any) -> dict[str, Any]:
    """Run one probe once and wrap its observations in a measurement envelope."""
    start = time.time()
    t0 = time.monotonic()
    observations = await module.measure(target, net, options)
    return build_measurement(
        probe=module.NAME, probe_version=module.VERSION, input=target, start_time=start,
        runtime=time.monotonic() - t0, observations=[o.to_dict() for o in observations],
        vantage=Vantage(resolver=getattr(options, "resolver", None)),
    )


def _human(measurement: dict[str, Any], describe: Any = None) -> str:
    """One line per observation; ``describe`` (a probe's optional ``describe(observation) -> lines``) adds detail."""
    lines = [f"{measurement['probe']} {measurement['input']}  ({measurement['runtime']:.3f} s)"]
    for o in measurement["observations"]:
        extra = {k: v for k, v in o.items() if k not in ("id", "operation", "parent_id", "t0", "t", "failure")}
        brief = ", ".join(f"{k}={v}" for k, v in list(extra.items())[:6] if not isinstance(v, dict | list))
        status = o["failure"] or "ok"
        lines.append(f"  #{o['id']:<3} {o['operation']:<18} {o['t'] * 1000:8.1f} ms  {status:<24} {brief}")
        if describe is not None:
            lines += [f"        {line}" for line in describe(o)]
    return "\n".join(lines)


def _make_command(name: str) -> click.Command:
    module = registry.load(name)

    def callback(target: str, as_json: bool, **values: Any) -> None:
        options = make_options(module.Options, values)
        measurement = asyncio.run(run_probe(module, target, Net(), options))
        if as_json:
            click.echo(json.dumps(measurement, ensure_ascii=False))
        else:
            click.echo(_human(measurement, getattr(module, "describe", None)))

    params: list[click.Parameter] = [click.Argument(["target"], metavar=module.TARGET_HELP)]
    params += options_from_dataclass(module.Options)
    params.append(click.Option(["--json", "as_json"], is_flag=True, help="Print one measurement object as JSON."))
    return click.Command(name, callback=callback, params=params, help=module.SUMMARY, short_help=module.SUMMARY)


class ProbeGroup(click.Group):
    """Subcommands generated from the probe registry, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return registry.names()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in registry.PROBES:
            return None
        return _make_command(cmd_name)


@click.group(cls=ProbeGroup)
def probe() -> None:
    """Run one probe once against one target and print what it observed.

    Probes record what the network did (timings, failures, every DNS answer,
    certificates); they never decide "blocked": use `censorscope report` for
    verdicts. Never probe real-world names from a country where that is risky.
    """
