"""``kill -9`` in the middle of ``censorscope run``, then ``--resume``: exactly once, every line intact.

The test starts its own loopback HTTP server; the targets are
http://127.0.0.1:PORT/N (IP literals: nothing is resolved).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.net

N_TARGETS = 80
REPEAT = 2


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        time.sleep(0.02)  # slow enough that the run is still going when it is killed
        body = f"page {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # socketserver's default backlog of 5 drops SYNs under concurrency
    daemon_threads = True


@pytest.fixture
def http_server():
    server = _Server(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "censorscope", *args]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_9_then_resume(tmp_path, http_server):
    lst = tmp_path / "targets.txt"
    lst.write_text("".join(f"http://127.0.0.1:{http_server}/{i}\n" for i in range(N_TARGETS)), encoding="utf-8")
    out = tmp_path / "results"
    args = ["run", "--list", str(lst), "--probe", "http", "--out", str(out), "--repeat", str(REPEAT),
            "--concurrency", "8", "--per-server", "8", "--timeout", "10"]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        jsonl = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(out.glob("*.jsonl")) if out.exists() else []
            if found and _lines(found[0]) >= 30:
                jsonl = found[0]
                break
            time.sleep(0.01)
        assert jsonl is not None, f"run did not get going: {proc.poll()} {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run_id = jsonl.name.removesuffix(".jsonl")
    killed_at = _lines(jsonl)
    assert 30 <= killed_at < N_TARGETS * REPEAT, "killed too late to test anything"
    meta = json.loads((out / f"{run_id}.meta.json").read_text())
    assert meta["status"] == "running"

    # simulate the worst a power loss can add: a torn fragment after the last full line
    with open(jsonl, "ab") as f:
        f.write(b'{"measurement_id": "torn-by-power-loss", "probe": "ht')

    r = subprocess.run(_cli("run", "--resume", run_id, "--out", str(out), "--concurrency", "16"),
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"run {run_id}" in r.stdout and str(jsonl.name) in r.stdout

    raw = jsonl.read_bytes()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.splitlines()]  # every line parses
    keys = Counter((m["probe"], m["input"], m["repetition"]) for m in records)
    expected = {("http", f"http://127.0.0.1:{http_server}/{i}", rep) for i in range(N_TARGETS) for rep in range(REPEAT)}
    assert set(keys) == expected
    assert max(keys.values()) == 1  # exactly once
    assert {m["run_id"] for m in records} == {run_id}
    bad = [(m["input"], m["annotations"], m["observations"]) for m in records
           if not m["observations"] or m["observations"][0]["failure"] is not None]
    assert bad == []
    assert json.loads((out / f"{run_id}.meta.json").read_text())["status"] == "complete"
