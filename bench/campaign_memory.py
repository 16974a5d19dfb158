"""Peak memory and throughput of a 100,000-target campaign against a loopback HTTP server.

    .venv/bin/python bench/campaign_memory.py [--targets 100000] [--concurrency 200]

Targets are http://127.0.0.1:PORT/0 ... /N-1 (IP literals: nothing is
resolved), probe ``http``, one repetition. The server is nginx when it is
installed (``return 200``), else a small asyncio server in its own process.
The campaign is ``censorscope run`` in a child process, so that its peak RSS
is measured alone (``getrusage(RUSAGE_CHILDREN)`` after it exits).

Reference: the task's bound of 300 MB peak RSS; the script prints
``peak/300MB`` (below 1.0 passes), the throughput in measurements/s, the
campaign's CPU time per measurement and the load average (the machine is
shared: throughput swings with other work, CPU per measurement less so).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_MB = 300.0
ASYNC_SERVER = r"""
import asyncio, socket, sys
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
async def handle(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)
        await writer.drain()
    except Exception:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096, reuse_port=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, port: int) -> subprocess.Popen:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx:
        conf = workdir / "nginx.conf"
        conf.write_text(
            f"worker_processes 1;\ndaemon off;\npid {workdir}/nginx.pid;\nerror_log {workdir}/nginx.err;\n"
            f"events {{ worker_connections 4096; }}\n"
            f"http {{ access_log off; client_body_temp_path {workdir}; proxy_temp_path {workdir};\n"
            f"  fastcgi_temp_path {workdir}; uwsgi_temp_path {workdir}; scgi_temp_path {workdir};\n"
            f"  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_timeout 0;\n"
            f"    location / {{ return 200 \"ok\\n\"; }} }} }}\n"
        )
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)], start_new_session=True)
        kind = "nginx"
    else:
        proc = subprocess.Popen([sys.executable, "-c", ASYNC_SERVER, str(port)], start_new_session=True)
        kind = "asyncio"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                print(f"server: {kind} on 127.0.0.1:{port}")
                return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("loopback server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=200)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cs-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        server = start_server(work, port)
        try:
            lst = work / "targets.txt"
            with lst.open("w") as f:
                for i in range(args.targets):
                    f.write(f"http://127.0.0.1:{port}/{i}\n")
            cmd = [sys.executable, "-m", "censorscope", "run", "--list", str(lst), "--probe", "http",
                   "--out", str(work / "results"), "--concurrency", str(args.concurrency),
                   "--per-server", str(args.concurrency), "--seed", "1", "--timeout", "30"]
            t0 = time.monotonic()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.monotonic() - t0
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the campaign child only (server not reaped yet)
            peak_kb, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"campaign failed with exit code {r.returncode}")
        summary = re.search(r"^run \S+: (\d+) measured this time.*; ([0-9.]+) s \(", r.stdout, re.M)
        outcomes = re.search(r"^outcomes: (.*)$", r.stdout, re.M)
        path = re.search(r"^results: (.*)$", r.stdout, re.M)
        if not (summary and outcomes and path):
            raise SystemExit(f"unexpected output of censorscope run:\n{r.stdout}")
        measured, runtime = int(summary.group(1)), float(summary.group(2))
        with open(path.group(1), "rb") as f:
            lines = sum(1 for _ in f)
    peak_mb = peak_kb / 1024
    print(f"targets: {args.targets}, concurrency: {args.concurrency}, stored lines: {lines}, "
          f"outcomes: {outcomes.group(1)}")
    print(f"peak RSS: {peak_mb:.1f} MB; peak/{REFERENCE_MB:.0f}MB = {peak_mb / REFERENCE_MB:.3f}")
    print(f"throughput: {measured / runtime:.0f} measurements/s "
          f"(run {runtime:.1f} s, wall incl. start-up {wall:.1f} s); "
          f"campaign CPU {1000 * cpu / max(measured, 1):.2f} ms per measurement, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if lines != args.targets:
        raise SystemExit(f"expected {args.targets} stored measurements, found {lines}")


if __name__ == "__main__":
    main()
