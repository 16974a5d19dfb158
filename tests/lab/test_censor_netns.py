"""A throwaway client-censor-server namespace trio for the censor's wire tests.

Interim: replaced by the lab helper's topology fixtures once tests/lab/conftest.py
provides them. Uses the fixed address plan (lab/addressing.py) with the server
namespace standing where the transit router would be; namespace names carry the
pid and a random suffix so parallel runs never clash.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from censorscope.lab import addressing as A

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

SERVER_EXTRA_V4 = (A.SERVER_V4, A.NO_DNS_V4, A.WEB_V4, A.RESOLVER_V4)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output."""
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


class Trio:
    """client ── censor ── server (the server also owns the server-side service addresses)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.client, self.censor, self.server = (f"cs-t{tag}-{n}" for n in ("cli", "cen", "srv"))
        self.procs: list[subprocess.Popen] = []

    def ns(self, name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside namespace ``name``."""
        return sh("ip", "netns", "exec", name, *cmd, check=check)

    def up(self) -> Trio:
        """Create namespaces, links, addresses and routes."""
        for n in (self.client, self.censor, self.server):
            sh("ip", "netns", "add", n)
            for k in ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                      "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                      "net.ipv4.tcp_no_metrics_save=1"):
                self.ns(n, "sysctl", "-qw", k)
            self.ns(n, "ip", "link", "set", "lo", "up")
        self.ns(self.censor, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ns(self.censor, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        sh("ip", "link", "add", "eth0", "netns", self.client, "type", "veth", "peer", "name", "cli0", "netns", self.censor)
        sh("ip", "link", "add", "up0", "netns", self.censor, "type", "veth", "peer", "name", "eth0", "netns", self.server)
        plan = [
            (self.client, "eth0", ["198.51.100.2/28", "2001:db8:1::2/64"]),
            (self.censor, "cli0", ["198.51.100.1/28", "2001:db8:1::1/64"]),
            (self.censor, "up0", ["198.51.100.17/28", "2001:db8:2::1/64"]),
            (self.server, "eth0", ["198.51.100.18/28", "2001:db8:2::2/64", "2001:db8:3::2/64"]
             + [f"{a}/32" for a in SERVER_EXTRA_V4]),
        ]
        for n, dev, addrs in plan:
            for a in addrs:
                self.ns(n, "ip", "addr", "add", a, "dev", dev, "nodad") if ":" in a else self.ns(
                    n, "ip", "addr", "add", a, "dev", dev)
            self.ns(n, "ip", "link", "set", dev, "up")
            self.ns(n, "ethtool", "-K", dev, "tx", "off", check=False)
        for prefix in ("198.51.100.0/24", "203.0.113.0/24"):
            self.ns(self.client, "ip", "route", "add", prefix, "via", "198.51.100.1")
        self.ns(self.client, "ip", "-6", "route", "add", "2001:db8::/32", "via", "2001:db8:1::1")
        self.ns(self.censor, "ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.18")
        self.ns(self.censor, "ip", "-6", "route", "add", "2001:db8:3::/64", "via", "2001:db8:2::2")
        self.ns(self.server, "ip", "route", "add", "198.51.100.0/24", "via", "198.51.100.17")
        self.ns(self.server, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:2::1")
        return self

    def spawn(self, name: str, *cmd: str, **kw: Any) -> subprocess.Popen:
        """Start a long-running process in namespace ``name`` (killed by ``down``)."""
        p = subprocess.Popen(["ip", "netns", "exec", name, *cmd], **kw)
        self.procs.append(p)
        return p

    def down(self) -> None:
        """Kill our processes and every process left in the namespaces; delete the namespaces."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for n in (self.client, self.censor, self.server):
            pids = sh("ip", "netns", "pids", n, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", n, check=False)


def run_in_netns(name: str, fn: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Call ``fn`` in a thread that joined namespace ``name``; return its result (or raise its error)."""
    box: dict[str, Any] = {}

    def target() -> None:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(fd)
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"work in namespace {name} did not finish in {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")
