"""Helpers for the VPN probe tests: free ports, daemons, throwaway namespaces.

Everything started here is stopped in ``finally`` blocks; namespace names
carry the pid and a random suffix so parallel test runs never clash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from censorscope.probes import registry
from censorscope.probes.net import Net

VENV_BIN = Path(sys.executable).parent


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def scripted_peer(script: Callable[[socket.socket], None]) -> tuple[int, socket.socket]:
    """A listener on 127.0.0.1 running ``script`` on its first accepted connection, in a thread.

    Returns (port, listener); the caller closes the listener. The connection is
    closed after the script; errors (the client went away) end it quietly.
    """
    srv = _listener()

    def serve() -> None:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        _run_script(script, c)

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], srv


def serving_peer(script: Callable[[socket.socket], None]) -> tuple[int, socket.socket]:
    """Like ``scripted_peer``, but ``script`` runs on *every* connection (a thread each) until the
    caller closes the listener."""
    srv = _listener()
    serve_each(srv, script)
    return srv.getsockname()[1], srv


@contextlib.contextmanager
def serving(script: Callable[[socket.socket], None]) -> Iterator[int]:
    """``serving_peer`` as a context: yields the port, closes the listener on the way out."""
    port, srv = serving_peer(script)
    try:
        yield port
    finally:
        srv.close()


def serve_each(listener: socket.socket, script: Callable[[socket.socket], None]) -> None:
    """Run ``script`` on every connection ``listener`` accepts (a thread each) until it is closed;
    each connection is closed after its script, errors (the client went away) end it quietly."""
    def serve() -> None:
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_run_script, args=(script, c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    return srv


def _run_script(script: Callable[[socket.socket], None], c: socket.socket) -> None:
    try:
        with c:
            script(c)
    except OSError:
        pass


def loopback_ip() -> str:
    """A random 127.x.y.z address, so daemons with fixed ports do not clash."""
    return f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


def run_probe(name: str, target: str, **options: object) -> list[dict]:
    """Run a probe in-process and return its observations as dicts."""
    module = registry.load(name)
    opts = module.Options(**options)
    return [o.to_dict() for o in asyncio.run(module.measure(target, Net(), opts))]


def op(observations: list[dict], operation: str) -> dict:
    """The single observation of ``operation`` (asserts there is exactly one)."""
    found = [o for o in observations if o["operation"] == operation]
    assert len(found) == 1, (operation, observations)
    return found[0]


def wait_for(predicate: object, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tcp_listening(host: str, port: int) -> bool:
    """True when something accepts TCP on host:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def log_has(path: Path, text: str) -> bool:
    """True when ``text`` appears in the file at ``path``."""
    try:
        return text in path.read_text(errors="replace")
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def daemon(argv: list[str], log: Path | None = None, netns: str | None = None, **kw: object) -> Iterator[subprocess.Popen]:
    """Run ``argv`` (inside ``netns`` if given) and stop it afterwards."""
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(5)
        if log:
            out.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A throwaway network namespace with only ``lo`` (up); deleted afterwards."""
    name = f"csvpn{os.getpid()}x{random.randrange(1 << 30):x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", name], check=False)


def cli_probe(name: str, target: str, *args: str, netns_name: str | None = None, timeout: float = 120) -> dict:
    """Run ``censorscope probe NAME TARGET ARGS --json`` (inside a namespace if given)."""
    argv = [str(VENV_BIN / "censorscope"), "probe", name, target, *args, "--json"]
    if netns_name:
        argv = ["ip", "netns", "exec", netns_name, *argv]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def need(binary: str) -> str:
    """Absolute path of a required binary (the test fails, not skips, without it)."""
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    assert path, f"{binary} is not installed (see ci/apt-packages.txt)"
    return path


def run_probe_in(ns: str, name: str, target: str, **options: object) -> list[dict]:
    """``run_probe`` in a thread that joined network namespace ``ns`` (sockets stay there)."""
    import ctypes
    import threading

    result: dict[str, object] = {}

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(fd)
        try:
            result["obs"] = run_probe(name, target, **options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            result["exc"] = exc

    th = threading.Thread(target=body)
    th.start()
    th.join()
    if "exc" in result:
        raise result["exc"]  # type: ignore[misc]
    return result["obs"]  # type: ignore[return-value]


@contextlib.contextmanager
def running_sshd(tmp_path: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """A real OpenSSH sshd on ``host`` (loopback), with a fresh ed25519 host key; yields ``HOST:PORT``."""
    from censorscope.probes.net import format_host_port

    sshd_bin = need("sshd")
    Path("/run/sshd").mkdir(exist_ok=True)
    key = tmp_path / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()  # free on 127.0.0.1; sshd on ::1 takes the same number
    conf = tmp_path / "sshd_config"
    conf.write_text(
        f"Port {port}\nListenAddress {host}\nHostKey {key}\nPidFile {tmp_path}/sshd.pid\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
    )
    with daemon([sshd_bin, "-D", "-e", "-f", str(conf)], log=tmp_path / "log"):
        wait_for(lambda: log_has(tmp_path / "log", "Server listening"), what="sshd")
        yield format_host_port(host, port)
