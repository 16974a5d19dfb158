"""The distribution carries every subpackage and data file (wheel), and the CLI exposes every command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from censorscope.measure.cli import COMMANDS, cli, load_command
from censorscope.probes import registry

ROOT = Path(__file__).resolve().parents[2]


def _walk(cmd: click.Command, path: list[str]):
    yield path
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), [*path, name])


def test_every_subpackage_folder_is_declared():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    assert declared == set(cfg["package-dir"])
    on_disk = set()
    for top in ("measure", "probes", "analysis", "lab", "data"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            on_disk.add("censorscope." + ".".join(rel))
    assert on_disk <= declared, f"folders missing from pyproject: {sorted(on_disk - declared)}"


@pytest.mark.slow
def test_wheel_contains_code_and_data(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300)
    [wheel] = tmp_path.glob("censorscope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("censorscope/__init__.py", "censorscope/__main__.py", "censorscope/measure/cli.py",
                     "censorscope/probes/wire/dnswire.py", "censorscope/analysis/verdicts/engine.py",
                     "censorscope/lab/censor/daemon.py", "censorscope/data/default_targets.csv",
                     "censorscope/data/blockpages.json", "censorscope/lab/scenarios/gfw.toml"):
        assert expected in names, expected
    assert not any(n.startswith(("tests/", "bench/", "measure/", "probes/")) for n in names)


def test_every_command_loads_and_has_help():
    for name in COMMANDS:
        load_command(name)
    paths = list(_walk(cli, []))
    assert len(paths) > 20
    for path in paths:
        r = CliRunner().invoke(cli, [*path, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, (path, r.output)


def test_every_registered_probe_loads_and_has_help():
    for name in registry.names():
        mod = registry.load(name)
        for attr in ("NAME", "VERSION", "SUMMARY", "TARGET_HELP", "Options", "measure"):
            assert hasattr(mod, attr), (name, attr)
        assert mod.NAME == name
        r = CliRunner().invoke(cli, ["probe", name, "--help"])
        assert r.exit_code == 0 and "--json" in r.output, (name, r.output)
