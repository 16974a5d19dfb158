"""Topology: namespaces, links, routes, hop count, isolation, parallel labs, teardown, crash recovery."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from censorscope.lab import addressing as A
from censorscope.lab import netns, topology
from censorscope.lab.topology import Topology

pytestmark = pytest.mark.lab


def _ns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _connect(address: str, port: int, timeout: float = 3.0) -> str:
    """'connected', 'refused' or the errno name (run inside a namespace)."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((address, port))
            return "connected"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e))


def _hop(address: str, ttl: int) -> tuple[str, int, int]:
    """Send one UDP datagram with ``ttl`` and return (ICMP source, type, code) from the error queue."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    level, ttl_opt, recverr = (
        (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 25) if fam == socket.AF_INET6  # IPV6_RECVERR
        else (socket.IPPROTO_IP, socket.IP_TTL, 11)  # IP_RECVERR
    )
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.setsockopt(level, recverr, 1)
        s.setsockopt(level, ttl_opt, ttl)
        s.sendto(b"censorscope-hop", (address, 33434))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                _, anc, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            for lvl, _typ, data in anc:
                if lvl == level:
                    # struct sock_extended_err {u32 errno; u8 origin, type, code, pad; u32 info, data}
                    _, _origin, icmp_type, icmp_code = struct.unpack_from("IBBB", data)
                    offender = data[16:]
                    if fam == socket.AF_INET:
                        src = socket.inet_ntop(socket.AF_INET, offender[4:8])
                    else:
                        src = socket.inet_ntop(socket.AF_INET6, offender[8:24])
                    return src, icmp_type, icmp_code
        raise AssertionError(f"no ICMP error for ttl {ttl} to {address}")


def test_up_down_leaves_nothing(fresh_lab_name):
    before = _ns_list()
    topo = Topology(fresh_lab_name)
    with topo:
        assert set(topo.namespaces.values()) <= _ns_list()
        sleeper = topo.spawn("sleeper", "server", ["sleep", "300"])
        assert netns.is_alive(sleeper.pid)
        assert (topology.state_dir(fresh_lab_name) / "state.json").exists()
        assert os.path.exists(f"/etc/netns/{topo.ns('client')}/resolv.conf")
    assert _ns_list() == before - set(topo.namespaces.values())
    assert not any(n.startswith(f"cs-{fresh_lab_name}-") for n in _ns_list())
    assert sleeper.poll() is not None
    assert not topology.state_dir(fresh_lab_name).exists()
    assert not any(os.path.exists(f"/etc/netns/{n}") for n in topo.namespaces.values())


def test_reachability_v4_v6_and_no_default_route(lab_session):
    topo = lab_session.topo
    # nothing listens on port 9: "refused" proves the SYN got there and back, through censor and transit
    for address in (A.SERVER_V4, A.SERVER_V6, A.CONTROL_V4, A.CONTROL_V6):
        assert topo.call_in("client", _connect, address, 9) == "refused", address
    for role in ("server", "control"):
        for address in (A.CLIENT_V4, A.CLIENT_V6):
            assert topo.call_in(role, _connect, address, 9) == "refused", (role, address)
    for role in topo.namespaces:
        for fam in ("-4", "-6"):
            routes = topo.run(role, ["ip", fam, "route", "show", "table", "all"]).stdout
            assert "default" not in routes, (role, fam, routes)
    # a route lookup sends nothing: an address outside the lab ranges has no route at all
    for role in topo.namespaces:
        probe = topo.run(role, ["ip", "route", "get", "192.0.2.1"], check=False)
        assert probe.returncode != 0 and "unreachable" in probe.stderr.lower(), (role, probe.stderr)


def test_hop_count_client_to_server(lab_session):
    topo = lab_session.topo
    assert topo.call_in("client", _hop, A.SERVER_V4, 1) == (A.CENSOR_CLIENT_SIDE_V4, 11, 0)
    assert topo.call_in("client", _hop, A.SERVER_V4, 2) == (A.TRANSIT_V4, 11, 0)
    assert topo.call_in("client", _hop, A.SERVER_V4, 3) == (A.SERVER_V4, 3, 3)  # port unreachable: arrived
    assert topo.call_in("client", _hop, A.SERVER_V6, 1)[0] == "2001:db8:1::1"
    assert topo.call_in("client", _hop, A.SERVER_V6, 3) == (A.SERVER_V6, 1, 4)


def test_router_sysctls_and_offload(lab_session):
    topo = lab_session.topo
    out = topo.run("censor", ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
                              "net.ipv4.conf.all.rp_filter", "net.ipv4.tcp_no_metrics_save"]).stdout.split()
    assert out == ["1", "1", "0", "1"]
    assert topo.run("client", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"
    features = topo.run("censor", ["ethtool", "-k", "cli0"]).stdout
    assert "tx-checksumming: off" in features
    assert "tentative" not in topo.run("client", ["ip", "-6", "addr"]).stdout


def test_two_labs_in_parallel(fresh_lab_name):
    other = fresh_lab_name + "b"
    a, b = Topology(fresh_lab_name), Topology(other)
    try:
        a.up()
        b.up()
        # same addresses in both, no clash: each lab's client reaches its own server
        assert a.call_in("client", _connect, A.SERVER_V4, 9) == "refused"
        assert b.call_in("client", _connect, A.SERVER_V4, 9) == "refused"
        a.down()
        assert b.call_in("client", _connect, A.SERVER_V4, 9) == "refused"
    finally:
        a.down()
        b.down()
    assert not any(n.startswith((f"cs-{fresh_lab_name}-", f"cs-{other}-")) for n in _ns_list())


CRASHER = r"""
import os, sys, time
from censorscope.lab.topology import Topology
t = Topology(sys.argv[1], keep=True).up()
t.spawn("sleeper", "server", ["sleep", "300"])
print(t.procs["sleeper"].pid, flush=True)
time.sleep(300)
"""


def test_crash_recovery_with_lab_down(fresh_lab_name):
    p = subprocess.Popen([sys.executable, "-c", CRASHER, fresh_lab_name], stdout=subprocess.PIPE, text=True)
    try:
        wrapper_pid = int(p.stdout.readline())
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    state = json.loads((topology.state_dir(fresh_lab_name) / "state.json").read_text())
    assert state["pids"]["sleeper"] == wrapper_pid
    assert any(n.startswith(f"cs-{fresh_lab_name}-") for n in _ns_list())
    orphans = netns.pids_in(topology.sys_ns(fresh_lab_name, "server"))
    assert orphans, "the crashed run left its process behind (precondition)"
    r = subprocess.run([sys.executable, "-m", "censorscope", "lab", "down", "--name", fresh_lab_name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not any(n.startswith(f"cs-{fresh_lab_name}-") for n in _ns_list())
    assert not any(netns.is_alive(pid) for pid in orphans)
    assert not topology.state_dir(fresh_lab_name).exists()
    # idempotent
    r = subprocess.run([sys.executable, "-m", "censorscope", "lab", "down", "--name", fresh_lab_name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_netns_call_in_is_thread_local(lab_session):
    own = os.stat("/proc/thread-self/ns/net").st_ino
    inside = lab_session.topo.call_in("client", lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert inside != own
    assert os.stat("/proc/thread-self/ns/net").st_ino == own


def test_up_refuses_an_existing_lab(fresh_lab_name):
    from censorscope.probes.errors import LabError

    with Topology(fresh_lab_name) as first:
        second = Topology(fresh_lab_name)
        with pytest.raises(LabError, match="already up"):
            second.up()
        second.down()  # must not touch the lab it did not build
        assert all(netns.exists(n) for n in first.namespaces.values())
