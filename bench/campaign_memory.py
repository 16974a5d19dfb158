"""Peak memory and throughput of a 100,000-target campaign against a loopback HTTP server.

    .venv/bin/python bench/campaign_memory.py [--targets 100000] [--concurrency 200]

Targets are http://127.0.0.1:PORT/0 ... /N-1 (IP literals: nothing is
resolved), probe ``http``, one repetition. The server is nginx when it is
installed (``return 200``), else a small asyncio server in its own process.
The campaign runs in a child process (``runs.execute``, the library behind
``censorscope run``) so that its peak RSS is measured alone
(``getrusage(RUSAGE_CHILDREN)`` after it exits).

Reference: the task's bound of 300 MB peak RSS; the script prints
``peak/300MB`` (below 1.0 passes) and the throughput in measurements/s.

The child caches TLS client contexts across measurements (``CachedNet``):
``Net.tls_context`` loads the system CA store on every call (~70 ms CPU here),
which otherwise dominates the http probe's cost and says nothing about the
campaign machinery this benchmark is about. ``--uncached`` measures without it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
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


def child(args: argparse.Namespace) -> None:
    """The measured process: one campaign run, summary as JSON on stdout."""
    from censorscope.measure.campaign import Campaign
    from censorscope.measure.runs import execute
    from censorscope.probes.net import Net

    @dataclasses.dataclass
    class CachedNet(Net):
        """A Net whose TLS contexts are built once per (verify, alpn) (see the module docstring)."""

        contexts: dict = dataclasses.field(default_factory=dict)

        def tls_context(self, *, verify: bool = True, alpn: list[str] | None = None):
            key = (verify, tuple(alpn or ()))
            if key not in self.contexts:
                self.contexts[key] = super().tls_context(verify=verify, alpn=alpn)
            return self.contexts[key]

    def factory(resolver: str | None) -> Net:
        return Net(resolver=resolver) if args.uncached else CachedNet(resolver=resolver)

    campaign = Campaign(
        lists=[args.list], probes=["http"], out=args.out, concurrency=args.concurrency,
        per_server=args.concurrency, seed=1, timeout=30.0,
    )
    summary = asyncio.run(execute(campaign, net_factory=factory))
    print(json.dumps({
        "measured": summary.measured, "runtime": summary.runtime, "path": str(summary.path),
        "outcomes": dict(summary.per_failure),
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--uncached", action="store_true", help="Use Net as it is (CA store loaded per request).")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--list", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory(prefix="cs-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        server = start_server(work, port)
        try:
            lst = work / "targets.txt"
            with lst.open("w") as f:
                for i in range(args.targets):
                    f.write(f"http://127.0.0.1:{port}/{i}\n")
            cmd = [sys.executable, __file__, "--child", "--list", str(lst), "--out", str(work / "results"),
                   "--concurrency", str(args.concurrency)] + (["--uncached"] if args.uncached else [])
            t0 = time.monotonic()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.monotonic() - t0
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the campaign child only (server not reaped yet)
            peak_kb, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"campaign failed with exit code {r.returncode}")
        result = json.loads(r.stdout.strip().splitlines()[-1])
        with open(result["path"], "rb") as f:
            lines = sum(1 for _ in f)
    peak_mb = peak_kb / 1024
    print(f"targets: {args.targets}, concurrency: {args.concurrency}, stored lines: {lines}, "
          f"outcomes: {result['outcomes']}")
    print(f"peak RSS: {peak_mb:.1f} MB; peak/{REFERENCE_MB:.0f}MB = {peak_mb / REFERENCE_MB:.3f}")
    print(f"throughput: {result['measured'] / result['runtime']:.0f} measurements/s "
          f"(run {result['runtime']:.1f} s, wall incl. start-up {wall:.1f} s); "
          f"campaign CPU {1000 * cpu / max(result['measured'], 1):.2f} ms per measurement, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if lines != args.targets:
        raise SystemExit(f"expected {args.targets} stored measurements, found {lines}")


if __name__ == "__main__":
    main()
