"""Benchmark: controls per second through the control helper vs the same probe run directly.

Usage: python bench/helper_controls.py [--n 2000] [--concurrency 32]

Starts ``censorscope helper serve`` (a subprocess, loopback allowed) and a TCP
listener on 127.0.0.1, then measures, in the same run:

- reference: the ``tcp`` probe run directly in-process, ``--concurrency`` at a time;
- helper: the same measurements as controls (``ControlClient.control_for``)
  through the helper's HTTP API, with the client's default 8 requests in flight.

Prints both rates and their ratio (helper / direct). The helper's cost per
control is one HTTP request, JSON both ways, and its policy checks; on the
real internet a control costs a round trip to the helper plus the probe's own
time, so this ratio is an upper bound on the helper's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from censorscope.measure.control import ControlClient
from censorscope.probes import tcp
from censorscope.probes.net import Net


async def _listener() -> tuple[asyncio.base_events.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    return server, server.sockets[0].getsockname()[1]


async def _direct(port: int, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    net = Net()

    async def one() -> None:
        async with sem:
            obs = await tcp.measure(f"127.0.0.1:{port}", net, tcp.Options(timeout=10))
            assert obs[0].failure is None, obs[0]

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t0)


async def _controls(url: str, port: int, n: int) -> float:
    async with ControlClient(url) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(client.control_for("tcp", f"127.0.0.1:{port}", tcp.Options(timeout=10))
                                         for _ in range(n)))
        elapsed = time.perf_counter() - t0
    failed = [r for r in results if r["failure"] or r["observations"][0]["failure"]]
    assert not failed, failed[:3]
    return n / elapsed


async def main(n: int, concurrency: int) -> None:
    exe = str(Path(sys.executable).with_name("censorscope"))
    # the helper logs a line per request: to a file, so that a full pipe never blocks it
    log = tempfile.NamedTemporaryFile("w+", prefix="helper-bench-", suffix=".log")
    helper = subprocess.Popen([exe, "helper", "serve", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8",
                               "--rate", "1000000", "--burst", "1000000"], stderr=log, text=True)
    try:
        m = None
        for _ in range(300):
            m = re.search(r"(http://\S+)", Path(log.name).read_text())
            if m:
                break
            await asyncio.sleep(0.05)
        assert m, "helper did not start"
        server, port = await _listener()
        await _controls(m.group(1), port, 50)  # warm-up: imports, first connections
        direct = await _direct(port, n, concurrency)
        via_helper = await _controls(m.group(1), port, n)
        server.close()
        print(f"direct tcp probe:     {direct:8.0f} measurements/s (concurrency {concurrency})")
        print(f"through the helper:   {via_helper:8.0f} controls/s (8 in flight)")
        print(f"ratio helper/direct:  {via_helper / direct:8.2f}")
    finally:
        helper.send_signal(signal.SIGTERM)
        helper.wait(15)
        log.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    asyncio.run(main(args.n, args.concurrency))
