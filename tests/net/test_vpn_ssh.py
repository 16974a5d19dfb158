"""ssh probe against a real OpenSSH sshd on loopback, and its failure paths."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from vpn_support import daemon, free_port, log_has, need, op, run_probe, scripted_peer, wait_for

from censorscope.probes.net import format_host_port

pytestmark = pytest.mark.net


@pytest.fixture(params=["127.0.0.1", "::1"])
def sshd(request, tmp_path: Path):
    host = request.param
    sshd_bin = need("sshd")
    Path("/run/sshd").mkdir(exist_ok=True)
    key = tmp_path / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    conf = tmp_path / "sshd_config"
    conf.write_text(
        f"Port {port}\nListenAddress {host}\nHostKey {key}\nPidFile {tmp_path}/sshd.pid\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
    )
    with daemon([sshd_bin, "-D", "-e", "-f", str(conf)], log=tmp_path / "log"):
        wait_for(lambda: log_has(tmp_path / "log", "Server listening"), what="sshd")
        yield format_host_port(host, port)


def test_ssh_real_sshd(sshd):
    obs = run_probe("ssh", f"ssh://{sshd}", timeout=10.0)
    conn = op(obs, "connect")
    hs = op(obs, "ssh_handshake")
    assert conn["failure"] is None and conn["proto"] == "tcp"
    assert hs["failure"] is None, hs
    assert hs["parent_id"] == conn["id"]
    assert hs["proto_version"] == "2.0" and hs["software_version"].startswith("OpenSSH_")
    assert "ssh-ed25519" in hs["kexinit"]["server_host_key_algorithms"]
    assert hs["kexinit"]["kex_algorithms"]
    assert hs["bytes_received"] > 100


def test_ssh_refused():
    port = free_port()
    obs = run_probe("ssh", f"127.0.0.1:{port}", timeout=5.0)
    assert [o["operation"] for o in obs] == ["connect"]
    assert obs[0]["failure"] == "connection_refused"


def _garbage_server(reply: bytes) -> tuple[int, socket.socket]:
    def script(c: socket.socket) -> None:
        c.sendall(reply)
        c.recv(4096)

    return scripted_peer(script)


def test_ssh_garbage_then_close():
    port, srv = _garbage_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        obs = run_probe("ssh", f"127.0.0.1:{port}", timeout=5.0)
    finally:
        srv.close()
    hs = op(obs, "ssh_handshake")
    assert hs["failure"] == "eof_error"


def test_ssh_bad_packet():
    port, srv = _garbage_server(b"SSH-2.0-fake\r\n\xff\xff\xff\xff garbage")
    try:
        obs = run_probe("ssh", f"127.0.0.1:{port}", timeout=5.0)
    finally:
        srv.close()
    hs = op(obs, "ssh_handshake")
    assert hs["failure"] == "unknown_failure: protocol_error: implausible packet length 4294967295"
    assert hs["server_banner"] == "SSH-2.0-fake"
