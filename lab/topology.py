"""The lab's namespaces and links: build, describe and always tear down.

::

    client ──A── censor ──B── transit ──C── server
                                 └────D── control      (uncensored vantage)

Each lab has a short name; its namespaces are ``cs-<name>-client`` … so several
labs run side by side. The address plan lives in ``censorscope.lab.addressing``.
No namespace has a default route: only the lab's documentation prefixes are
routed, so a stray connection to any other address fails locally with
ENETUNREACH and no packet ever leaves the machine.

A lab records what it created in ``/run/censorscope/labs/<name>/state.json``
(namespaces, ``/etc/netns`` directories, pids) *before* creating it, so
``teardown(name)`` (``censorscope lab down``) can clean up after a crashed run.
``Topology`` is a context manager and also registers an ``atexit`` teardown
unless it was built with ``keep=True`` (``censorscope lab up``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from censorscope.lab import addressing as A
from censorscope.lab import netns
from censorscope.probes.errors import LabError, NotRoot

STATE_ROOT = Path("/run/censorscope/labs")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
ROUTERS = ("censor", "transit")

#: resolver each namespace's ``/etc/resolv.conf`` names under ``ip netns exec``
RESOLV = {
    "client": (A.RESOLVER_V4, A.RESOLVER_V6),
    "censor": (A.PUBLIC_RESOLVER_V4,),
    "transit": (A.PUBLIC_RESOLVER_V4,),
    "server": (A.PUBLIC_RESOLVER_V4,),
    "control": (A.PUBLIC_RESOLVER_V4, A.PUBLIC_RESOLVER_V6),
}

# Routes per namespace: (prefix, gateway). Connected /28s and /64s are more specific
# than these, so e.g. the censor reaches the client directly and the rest via transit.
ROUTES: dict[str, tuple[tuple[str, str], ...]] = {
    "client": (("198.51.100.0/24", "198.51.100.1"), ("203.0.113.0/24", "198.51.100.1"),
               ("2001:db8::/32", "2001:db8:1::1")),
    "censor": (("198.51.100.0/24", "198.51.100.18"), ("203.0.113.0/24", "198.51.100.18"),
               ("2001:db8::/32", "2001:db8:2::2")),
    "transit": (("198.51.100.0/28", "198.51.100.17"), ("2001:db8:1::/64", "2001:db8:2::1")),
    "server": (("198.51.100.0/24", "203.0.113.1"), ("2001:db8::/32", "2001:db8:3::1")),
    "control": (("198.51.100.0/24", "198.51.100.33"), ("203.0.113.0/24", "198.51.100.33"),
                ("2001:db8::/32", "2001:db8:4::1")),
}


def geteuid() -> int:
    """The effective uid (a seam so tests can pretend not to be root)."""
    return os.geteuid()


def require_root() -> None:
    """Raise ``NotRoot`` unless running as root."""
    if geteuid() != 0:
        raise NotRoot("the lab needs root (network namespaces, iptables): run with sudo")


def check_name(name: str) -> str:
    """Validate a lab name (it becomes part of namespace and file names)."""
    if not NAME_RE.match(name):
        raise LabError(f"bad lab name {name!r}: use 1-16 characters a-z, 0-9, '-'")
    return name


def sys_ns(lab: str, role: str) -> str:
    """The system name of namespace ``role`` of lab ``lab``: ``cs-<lab>-<role>``."""
    return f"cs-{lab}-{role}"


def state_dir(lab: str) -> Path:
    """Where lab ``lab`` keeps its state file, configs, logs and certificates."""
    return STATE_ROOT / lab


def _run(argv: list[str], *, input: str | None = None, timeout: float = 30) -> str:
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])} failed: {(p.stderr or p.stdout).strip()[:400]}")
    return p.stdout


def _sysctls(role: str) -> dict[str, str]:
    """Per-namespace sysctls (see LAB-NOTES.md), set before any interface exists."""
    values = {
        "ipv6/conf/all/accept_dad": "0", "ipv6/conf/default/accept_dad": "0",
        "ipv6/conf/all/accept_ra": "0", "ipv6/conf/default/accept_ra": "0",
        "ipv6/conf/default/autoconf": "0",
        "ipv4/conf/all/rp_filter": "0", "ipv4/conf/default/rp_filter": "0",
        "ipv4/tcp_no_metrics_save": "1",
    }
    if role in ROUTERS:
        values["ipv4/ip_forward"] = "1"
        values["ipv6/conf/all/forwarding"] = "1"
    return values


def _write_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        with open(f"/proc/sys/net/{key}", "w") as f:
            f.write(value)


class Topology:
    """The five namespaces of one lab and the veth links between them.

    ``up()`` builds them (refusing when a lab with the same name exists);
    ``down()`` removes everything, whatever state it is in. Processes started with
    ``spawn`` are recorded in the state file and killed by ``down``.
    """

    def __init__(self, name: str, *, keep: bool = False) -> None:
        self.name = check_name(name)
        self.keep = keep
        self.dir = state_dir(name)
        self.namespaces = {role: sys_ns(name, role) for role in A.NAMESPACES}
        self.procs: dict[str, subprocess.Popen] = {}
        self._atexit = False
        self._owned = False

    # --- state file -------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def read_state(self) -> dict[str, Any]:
        """The state file's content ({} when missing)."""
        return read_state(self.name)

    def update_state(self, **fields: Any) -> None:
        """Merge ``fields`` into the state file (written atomically)."""
        state = self.read_state()
        state.update(fields)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    # --- lifecycle --------------------------------------------------------
    def up(self) -> Topology:
        """Create namespaces, links, addresses, routes and sysctls."""
        require_root()
        if any(netns.exists(ns) for ns in self.namespaces.values()):
            raise LabError(f"lab {self.name!r} is already up (or left over from a crash): "
                           f"`censorscope lab down --name {self.name}` first")
        if self.dir.exists():
            teardown(self.name)  # files left by a run that never created namespaces
        self._owned = True  # from here on, down() removes what this object (partly) built
        self.dir.mkdir(parents=True, exist_ok=True)
        self.update_state(
            name=self.name, namespaces=list(self.namespaces.values()),
            etc_netns=[os.path.join(netns.ETC_NETNS_DIR, ns) for ns in self.namespaces.values()],
            pids={}, created=time.time(), owner_pid=os.getpid(),
        )
        if not self.keep and not self._atexit:
            atexit.register(self.down)
            self._atexit = True
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        ns = self.namespaces
        _run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in ns.values()))
        for role, n in ns.items():
            netns.call_in(n, _write_sysctls, _sysctls(role))
        links = "".join(
            f"link add {lk.a_if} netns {ns[lk.a_ns]} type veth peer name {lk.b_if} netns {ns[lk.b_ns]}\n"
            for lk in A.LINKS
        )
        _run(["ip", "-batch", "-"], input=links)
        for role, n in ns.items():
            _run(["ip", "-n", n, "-batch", "-"], input=self._ns_batch(role))
        # veth checksum offload shows bad checksums to in-namespace sniffers (LAB-NOTES.md)
        jobs = []
        for role, n in ns.items():
            ifs = [lk.a_if for lk in A.LINKS if lk.a_ns == role] + [lk.b_if for lk in A.LINKS if lk.b_ns == role]
            script = "; ".join(f"ethtool -K {i} tx off >/dev/null 2>&1" for i in ifs)
            jobs.append(subprocess.Popen(netns.ns_argv(n, ["sh", "-c", script])))
        for role, n in ns.items():
            d = Path(netns.ETC_NETNS_DIR) / n
            d.mkdir(parents=True, exist_ok=True)
            (d / "resolv.conf").write_text("".join(f"nameserver {r}\n" for r in RESOLV[role]))
            (d / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
        for j in jobs:
            j.wait(timeout=30)

    def _ns_batch(self, role: str) -> str:
        lines = ["link set lo up"]
        for lk in A.LINKS:
            for ns_, if_, v4, v6 in ((lk.a_ns, lk.a_if, lk.a_v4, lk.a_v6), (lk.b_ns, lk.b_if, lk.b_v4, lk.b_v6)):
                if ns_ == role:
                    lines += [f"addr add {v4} dev {if_}", f"addr add {v6} dev {if_} nodad", f"link set {if_} up"]
        for prefix, gw in ROUTES[role]:
            lines.append(f"route add {prefix} via {gw}")
        if role == "transit":
            # forged DNS answers point here: drop silently, like unresponsive real addresses
            lines += [f"route add blackhole {A.FORGED_PREFIX_V4}", f"route add blackhole {A.FORGED_PREFIX_V6}"]
        return "\n".join(lines) + "\n"

    def down(self) -> None:
        """Kill every process in the lab and remove namespaces, ``/etc/netns`` dirs and state.

        A no-op unless this object built the lab: a refused ``up`` never tears down
        the lab that was already running under the same name.
        """
        if not self._owned:
            return
        self._owned = False
        for p in self.procs.values():
            with contextlib.suppress(OSError):
                p.terminate()
        teardown(self.name, reap=list(self.procs.values()))
        self.procs.clear()

    def __enter__(self) -> Topology:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- running things inside -------------------------------------------
    def ns(self, role: str) -> str:
        """System name of namespace ``role`` (``client``, ``server`` …)."""
        try:
            return self.namespaces[role]
        except KeyError:
            raise LabError(f"no namespace {role!r}; have {', '.join(self.namespaces)}") from None

    def argv(self, role: str, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run in namespace ``role``."""
        return netns.ns_argv(self.ns(role), argv)

    def run(self, role: str, argv: list[str], *, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command to completion inside ``role``; output captured as text."""
        p = subprocess.run(self.argv(role, argv), capture_output=True, text=True, timeout=timeout,
                           env=env, input=input)
        if check and p.returncode != 0:
            raise LabError(f"{' '.join(argv[:4])} in {role} exited {p.returncode}: {p.stderr.strip()[:400]}")
        return p

    def spawn(self, key: str, role: str, argv: list[str], *, log: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a long-running process in ``role``, recorded under ``key`` for teardown."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        try:
            p = subprocess.Popen(self.argv(role, argv), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        finally:
            if log:
                out.close()
        self.procs[key] = p
        state = self.read_state()
        pids = state.get("pids", {})
        pids[key] = p.pid
        self.update_state(pids=pids)
        return p

    def stop(self, key: str, timeout: float = 5) -> None:
        """Stop the process recorded under ``key`` (SIGTERM, then SIGKILL)."""
        p = self.procs.pop(key, None)
        if p is not None:
            _terminate([p], timeout)
        state = self.read_state()
        pids = state.get("pids", {})
        pids.pop(key, None)
        self.update_state(pids=pids)

    def call_in(self, role: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a Python callable in a thread inside namespace ``role`` (see ``netns.call_in``)."""
        return netns.call_in(self.ns(role), fn, *args, **kwargs)

    def run_async_in(self, role: str, coro_factory: Any) -> Any:
        """Run a coroutine inside ``role`` on its own event loop and return its result."""
        return netns.run_async_in(self.ns(role), coro_factory)


def read_state(lab: str) -> dict[str, Any]:
    """The state file of lab ``lab`` ({} when missing or unreadable)."""
    try:
        return json.loads((state_dir(lab) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def list_labs() -> list[str]:
    """Names of labs that have a state directory or namespaces on this machine."""
    names = set()
    if STATE_ROOT.is_dir():
        names.update(p.name for p in STATE_ROOT.iterdir() if p.is_dir())
    if os.path.isdir(netns.NETNS_DIR):
        for entry in os.listdir(netns.NETNS_DIR):
            m = re.match(r"^cs-(.+)-(client|censor|transit|server|control)$", entry)
            if m:
                names.add(m.group(1))
    return sorted(names)


def _terminate(procs: list[subprocess.Popen], timeout: float) -> None:
    for p in procs:
        with contextlib.suppress(OSError):
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                p.kill()
            p.wait(5)


def teardown(lab: str, *, reap: list[subprocess.Popen] | None = None, timeout: float = 3.0) -> list[str]:
    """Remove everything lab ``lab`` created, from its state file and naming convention.

    Works after a crash (stale state file, orphaned daemons) and is idempotent.
    Returns the namespaces that were removed.
    """
    require_root()
    check_name(lab)
    state = read_state(lab)
    namespaces = set(state.get("namespaces", [])) | {sys_ns(lab, r) for r in A.NAMESPACES}
    present = sorted(n for n in namespaces if netns.exists(n))
    pids = {int(p) for p in state.get("pids", {}).values()}
    for n in present:
        pids.update(netns.pids_in(n))
    pids.discard(os.getpid())
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    for p in reap or []:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout)
    deadline = time.monotonic() + timeout
    while any(netns.is_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if netns.is_alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    for p in reap or []:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
    if present:
        subprocess.run(["ip", "-batch", "-"], input="".join(f"netns del {n}\n" for n in present),
                       capture_output=True, text=True, timeout=30)
    for d in set(state.get("etc_netns", [])) | {os.path.join(netns.ETC_NETNS_DIR, n) for n in namespaces}:
        shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(state_dir(lab), ignore_errors=True)
    left = [n for n in present if netns.exists(n)]
    if left:
        raise LabError(f"could not remove namespaces {', '.join(left)}")
    return present
