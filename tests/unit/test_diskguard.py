"""The disk guard stops a run cleanly on a nearly full file system; nothing stored is lost or torn."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import types
from pathlib import Path

import pytest

from censorscope.measure.campaign import Campaign
from censorscope.measure.diskguard import DiskFull, DiskGuard
from censorscope.measure.runs import execute
from censorscope.measure.store import StoreProblem, iter_measurements
from censorscope.probes.observation import Recorder


def _fat_probe() -> types.ModuleType:
    """A fake probe whose measurements are ~40 KB each, to fill a small disk quickly."""
    mod = types.ModuleType("fat_probe")

    @dataclasses.dataclass
    class Options:
        timeout: float = 5.0

    async def measure(target: str, net: object, options: Options) -> list:
        rec = Recorder()
        rec.begin("connect", address=target).ok(padding="x" * 40_000)
        return rec.observations

    mod.NAME, mod.VERSION, mod.SUMMARY, mod.TARGET_HELP = "fat", "0", "fat", "URL"
    mod.Options = Options
    mod.measure = measure
    mod.target_from_url = lambda url: url
    return mod


@pytest.fixture
def small_fs(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_guard_raises_below_reserve(small_fs: Path):
    guard = DiskGuard(small_fs, min_free_bytes=1024 * 1024, min_free_fraction=0.0)
    guard.check()
    (small_fs / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 + 512 * 1024))
    with pytest.raises(DiskFull, match="results stored so far are intact"):
        guard.check()


def test_run_stops_cleanly_before_the_disk_fills(small_fs: Path, tmp_path: Path):
    targets = tmp_path / "list.txt"
    targets.write_text("".join(f"http://127.0.0.1:9/{i}\n" for i in range(500)))
    out = small_fs / "results"
    campaign = Campaign(lists=[str(targets)], probes=["fat"], out=str(out), concurrency=4)
    guard = DiskGuard(small_fs, min_free_bytes=1024 * 1024, min_free_fraction=0.0)
    summary = asyncio.run(execute(campaign, probes={"fat": _fat_probe()}, disk_guard=guard))
    assert summary.stopped and "free" in summary.stopped
    assert not summary.complete
    problems: list[StoreProblem] = []
    stored = list(iter_measurements(summary.path, problems.append))
    assert problems == []  # no torn or corrupt line
    assert 10 < len(stored) < 500
    assert len(stored) == summary.measured
    free, _ = guard.free_bytes()
    assert free > 512 * 1024  # stopped with room to spare, not by ENOSPC
