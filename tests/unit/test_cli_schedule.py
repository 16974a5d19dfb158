"""CLI of schedule/gc/sync: units written, verified, listed and removed; cron line; gc and sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from censorscope.measure.cli import cli


def _campaign(tmp_path: Path) -> Path:
    lst = tmp_path / "list.txt"
    lst.write_text("http://127.0.0.1:9/\n")
    camp = tmp_path / "weekly.toml"
    camp.write_text(f'name = "weekly"\n[targets]\nlists = ["{lst}"]\n[run]\nprobes = ["tcp"]\nout = "res"\n')
    return camp


def test_install_list_remove(tmp_path: Path):
    camp = _campaign(tmp_path)
    units = tmp_path / "units"
    r = CliRunner().invoke(cli, ["schedule", "install", str(camp), "--every", "6h", "--jitter", "10m",
                                 "--unit-dir", str(units)])
    assert r.exit_code == 0, r.output
    svc, tmr = units / "censorscope-weekly.service", units / "censorscope-weekly.timer"
    assert svc.exists() and tmr.exists()
    text = svc.read_text()
    assert f"ExecStart={sys.executable} -m censorscope schedule tick {camp}" in text
    assert f"ReadWritePaths={tmp_path / 'res'} {tmp_path / 'res' / '.schedule'}" in text
    v = subprocess.run(["systemd-analyze", "verify", "--man=no", str(svc), str(tmr)],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stderr
    r = CliRunner().invoke(cli, ["schedule", "list", "--unit-dir", str(units)])
    assert "censorscope-weekly\t*-*-* 00/6:00:00 UTC\tjitter 600s" in r.output
    r = CliRunner().invoke(cli, ["schedule", "remove", "weekly", "--unit-dir", str(units)])
    assert r.exit_code == 0 and not svc.exists() and not tmr.exists()
    r = CliRunner().invoke(cli, ["schedule", "remove", "weekly", "--unit-dir", str(units)])
    assert r.exit_code == 2 and "no timer" in r.output


def test_install_refuses_intervals_without_calendar_slots(tmp_path: Path):
    r = CliRunner().invoke(cli, ["schedule", "install", str(_campaign(tmp_path)), "--every", "5h",
                                 "--unit-dir", str(tmp_path / "u")])
    assert r.exit_code == 2 and "calendar" in r.output
    assert not (tmp_path / "u").exists() or not any((tmp_path / "u").iterdir())


def test_cron_line(tmp_path: Path):
    r = CliRunner().invoke(cli, ["schedule", "install", str(_campaign(tmp_path)), "--every", "6h", "--cron"])
    assert r.exit_code == 0
    assert r.output.startswith(f"*/15 * * * * {sys.executable} -m censorscope schedule tick ")
    assert "--every 6h --jitter 0s" in r.output


def test_help_of_every_command():
    for args in (["schedule"], ["schedule", "install"], ["schedule", "list"], ["schedule", "remove"],
                 ["schedule", "tick"], ["daemon"], ["gc"], ["sync"]):
        r = CliRunner().invoke(cli, [*args, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, args


def test_sync_and_gc_commands(tmp_path: Path):
    res = tmp_path / "res"
    res.mkdir()
    (res / "20261001T000000Z-abcdef.jsonl").write_text('{"measurement_id": "m", "probe": "tcp", "input": "x"}\n')
    r = CliRunner().invoke(cli, ["sync", str(res), f"file://{tmp_path / 'dest'}", "--prefix", "v1",
                                 "--min-age", "0s"])
    assert r.exit_code == 0, r.output
    assert "sent 1 file(s)" in r.output
    assert (tmp_path / "dest" / "v1" / "20261001T000000Z-abcdef.jsonl").exists()
    r = CliRunner().invoke(cli, ["gc", str(res), "--keep", "0s"])
    assert r.exit_code == 0, r.output
    assert "compacted 1 run(s), 1 measurement(s)" in r.output
    assert not (res / "20261001T000000Z-abcdef.jsonl").exists()
    r = CliRunner().invoke(cli, ["sync", str(res), "file:///x", "--option", "nokeyvalue"])
    assert r.exit_code == 2
