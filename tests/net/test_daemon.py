"""`censorscope daemon` SIGTERM'd mid-run loses nothing, exits 0, and resumes the same run next time."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.net

N = 40


async def _slow_page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(0.25)  # slow enough that SIGTERM lands mid-run
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()


def _lines(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "torn last line"
    return [json.loads(x) for x in raw.splitlines() if x.strip()]


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _daemon(camp: Path, state: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "censorscope", "daemon", str(camp), "--every", "1h", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_daemon_sigterm_loses_nothing_and_resumes(tmp_path: Path, start_server):
    server = start_server(_slow_page)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"http://127.0.0.1:{server.port}/{i}\n" for i in range(N)))
    out = tmp_path / "results"
    camp = tmp_path / "c.toml"
    camp.write_text(f'name = "c"\n[targets]\nlists = ["{lst}"]\n'
                    f'[run]\nprobes = ["http"]\nconcurrency = 2\nper_server = 2\nout = "{out}"\n')
    state = tmp_path / "state"

    first = _daemon(camp, state)
    try:
        _wait(lambda: any(out.glob("*.jsonl")) and len(_lines(next(out.glob("*.jsonl")))) >= 4, 60,
              "the first measurements")
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr[-2000:]
    events = [json.loads(line)["event"] for line in stdout.splitlines()]
    assert events[0] == "daemon_start" and "run_start" in events and events[-1] == "daemon_stop"
    [jsonl] = list(out.glob("*.jsonl"))
    done_first = _lines(jsonl)
    assert 4 <= len(done_first) < N  # stopped mid-run, every stored line whole
    st = json.loads((state / "c.state.json").read_text())
    assert st["complete"] is False and st["run_id"] == jsonl.stem

    second = _daemon(camp, state)
    try:
        _wait(lambda: json.loads((state / "c.state.json").read_text()).get("complete") is True, 120,
              "the resumed run to complete")
        second.send_signal(signal.SIGTERM)
        stdout2, stderr2 = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, stderr2[-2000:]
    assert any(json.loads(x).get("resume") == jsonl.stem for x in stdout2.splitlines()
               if json.loads(x)["event"] == "run_start")
    assert list(out.glob("*.jsonl")) == [jsonl]  # resumed, not a new run
    every = _lines(jsonl)
    firsts = Counter(m["input"] for m in every if m["attempt"] == 0)
    assert len(firsts) == N and set(firsts.values()) == {1}  # each target exactly once overall
