"""ssh probe against a real OpenSSH sshd on loopback, and its failure paths."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from vpn_support import free_port, op, run_probe, running_sshd, scripted_peer

pytestmark = pytest.mark.net


@pytest.fixture(params=["127.0.0.1", "::1"])
def sshd(request, tmp_path: Path):
    with running_sshd(tmp_path, request.param) as address:
        yield address


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
