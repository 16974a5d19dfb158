"""``censorscope lab …``: bring a simulated censored network up, use it, tear it down.

Thin commands over ``censorscope.lab`` (``Lab``, ``scenario``, ``topology``).
Every command that touches the system needs root; without it the command
prints one line and exits 2 (``NotRoot``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click

from censorscope.lab import netns, topology
from censorscope.lab import scenario as scenario_mod
from censorscope.probes.errors import LabError

ROLES = ("client", "control", "server", "censor", "transit")
DEFAULT_NAME = "lab"


def _pick_scenario(name: str | None, file: str | None) -> scenario_mod.Scenario:
    if name and file:
        raise click.UsageError("give --scenario or --scenario-file, not both")
    if file:
        return scenario_mod.load_file(file)
    return scenario_mod.load(name or "baseline")


@click.group()
def lab() -> None:
    """A simulated censored network in network namespaces (needs root).

    client ── censor ── transit ── server, plus control (uncensored) on transit.
    Scenarios say what the censor does and what a correct verdict is.
    """


@lab.command()
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Lab name (labs with different names run side by side).")
@click.option("--scenario", "scenario_name", help="Shipped scenario (see `censorscope lab scenarios`); default baseline.")
@click.option("--scenario-file", type=click.Path(exists=True, dir_okay=False), help="A scenario TOML file of your own.")
def up(name: str, scenario_name: str | None, scenario_file: str | None) -> None:
    """Build a lab and leave it running (tear it down with `lab down`)."""
    from censorscope.lab.lab import Lab

    topology.require_root()
    sc = _pick_scenario(scenario_name, scenario_file)
    t0 = time.monotonic()
    lab_ = Lab(name, keep=True).up(sc)
    click.echo(f"lab {name!r} up in {time.monotonic() - t0:.2f} s with scenario {sc.name!r}: {sc.description}")
    click.echo(f"  run inside:  censorscope lab exec --name {name} --ns client -- CMD ...")
    click.echo(f"  lab CA:      {lab_.ca_file}")
    click.echo(f"  tear down:   censorscope lab down --name {name}")


@lab.command()
@click.option("--name", default=None, help="Lab name (default: every lab on this machine).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(name: str | None, as_json: bool) -> None:
    """Show running labs: namespaces, processes, scenario."""
    topology.require_root()
    names = [topology.check_name(name)] if name else topology.list_labs()
    out = []
    for n in names:
        st = topology.read_state(n)
        ns = {r: topology.sys_ns(n, r) for r in ROLES}
        pids = {k: {"pid": p, "alive": netns.is_alive(p)} for k, p in st.get("pids", {}).items()}
        out.append({
            "name": n, "scenario": st.get("scenario"), "state_dir": str(topology.state_dir(n)),
            "namespaces": {r: netns.exists(s) for r, s in ns.items()}, "processes": pids,
            "ca_file": st.get("ca_file"),
        })
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    if not out:
        click.echo("no labs" if not name else f"no lab {name!r}")
        if name:
            sys.exit(1)
        return
    for lab_ in out:
        healthy = all(lab_["namespaces"].values()) and all(p["alive"] for p in lab_["processes"].values())
        click.echo(f"{lab_['name']}: {'up' if healthy else 'DEGRADED'}  scenario={lab_['scenario']}")
        missing = [r for r, ok in lab_["namespaces"].items() if not ok]
        if missing:
            click.echo(f"  missing namespaces: {', '.join(missing)}")
        for k, p in sorted(lab_["processes"].items()):
            click.echo(f"  {k:<16} pid {p['pid']:<8} {'running' if p['alive'] else 'DEAD'}")
    if name and not (all(out[0]["namespaces"].values())):
        sys.exit(1)


@lab.command()
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Lab name.")
def down(name: str) -> None:
    """Tear a lab down completely (also after a crash: processes, namespaces, files)."""
    topology.require_root()
    removed = topology.teardown(name)
    click.echo(f"lab {name!r} down ({len(removed)} namespaces removed)")


@lab.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Lab name.")
@click.option("--ns", "role", type=click.Choice(ROLES), default="client", show_default=True,
              help="Namespace to run in.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec(name: str, role: str, command: tuple[str, ...]) -> None:  # noqa: A001 - the command's name
    """Run COMMAND inside a lab namespace (lab resolver and lab CA in effect).

    Example: censorscope lab exec --ns client -- censorscope probe dns www.example.com
    """
    topology.require_root()
    sys.exit(run_in_lab(name, role, list(command)))


def run_in_lab(name: str, role: str, argv: list[str], *, cwd: str | None = None) -> int:
    """Run ``argv`` in namespace ``role`` of lab ``name`` with the lab environment; its exit code."""
    from censorscope.lab.servers import lab_env

    ns = topology.sys_ns(topology.check_name(name), role)
    if not netns.exists(ns):
        raise LabError(f"lab {name!r} is not up (no namespace {ns}); start it with `censorscope lab up --name {name}`")
    env = lab_env(topology.state_dir(name))
    # the venv's scripts first, so `censorscope` inside the lab is this installation
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run(netns.ns_argv(ns, argv), env=env, cwd=cwd).returncode


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (description, behaviours, targets, ground truth).")
def scenarios(as_json: bool) -> None:
    """List the shipped scenarios with their targets and ground truth."""
    loaded = [scenario_mod.load(n) for n in scenario_mod.shipped()]
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in loaded], indent=1))
        return
    for s in loaded:
        click.echo(f"{s.name}: {s.description}")
        click.echo(f"  censor: {', '.join(s.behaviours) or '(none)'}   sites: {len(s.sites)}")
        for t in s.truth[:12]:
            click.echo(f"    {t.probe:<10} {t.target:<40} {t.label()}")
        if len(s.truth) > 12:
            click.echo(f"    ... and {len(s.truth) - 12} more (--json for all)")


@lab.command()
@click.option("--name", default="demo", show_default=True, help="Lab name.")
@click.option("--keep-results", type=click.Path(file_okay=False), help="Copy the results folder here.")
def demo(name: str, keep_results: str | None) -> None:
    """Offline demo: a Great-Firewall-like censor in front of stand-ins for every default target.

    Brings up the `gfw` scenario, runs `censorscope run --list default --out results`
    in the client namespace (temporary working folder), prints the summary and tears down.
    """
    from censorscope.lab.lab import Lab

    topology.require_root()
    sc = scenario_mod.load("gfw")
    t0 = time.monotonic()
    with Lab(name) as lab_:
        lab_.up(sc)
        click.echo(f"lab up in {time.monotonic() - t0:.1f} s: {sc.description}")
        click.echo(f"censor: {', '.join(sc.behaviours)}; {len(sc.sites)} sites hosted in the lab")
        with tempfile.TemporaryDirectory(prefix="censorscope-demo-") as work:
            argv = ["censorscope", "run", "--list", "default", "--out", "results"]
            click.echo(f"$ censorscope lab exec --ns client -- {' '.join(argv)}   (in {work})")
            sys.stdout.flush()
            rc = run_in_lab(name, "client", argv, cwd=work)
            urls = {u for us in scenario_mod.list_urls("default").values() for u in us}
            labels = Counter(t.label() for t in sc.truth if t.probe == "web" and t.target in urls)
            click.echo("ground truth for these targets (what the lab's censor does): "
                       + ", ".join(f"{k}={v}" for k, v in labels.most_common()))
            if keep_results:
                import shutil

                shutil.copytree(Path(work) / "results", keep_results, dirs_exist_ok=True)
                click.echo(f"results copied to {keep_results}")
    click.echo(f"lab down; demo finished in {time.monotonic() - t0:.1f} s")
    if rc != 0:
        raise LabError(f"the campaign exited with code {rc}")


from censorscope.lab.evaluate import evaluate_command  # noqa: E402 - lives in its own module

lab.add_command(evaluate_command)

from censorscope.lab.samples import samples_command  # noqa: E402 - lives in its own module

lab.add_command(samples_command)
