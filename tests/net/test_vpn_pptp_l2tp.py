"""pptp probe against pptpd and l2tp probe against xl2tpd, both real, on loopback; failure paths."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest
from vpn_support import (
    daemon,
    free_port,
    log_has,
    loopback_ip,
    need,
    op,
    run_probe,
    scripted_peer,
    tcp_listening,
    wait_for,
)

pytestmark = pytest.mark.net


@pytest.fixture
def pptpd(tmp_path: Path):
    ip = loopback_ip()  # pptpd's port is fixed at 1723: a private loopback address avoids clashes
    conf = tmp_path / "pptpd.conf"
    conf.write_text(f"option {tmp_path}/options\nlocalip 192.0.2.1\nremoteip 192.0.2.2-9\n")
    (tmp_path / "options").write_text("name pptpd\n")
    argv = [need("pptpd"), "-f", "-c", str(conf), "-l", ip, "-p", str(tmp_path / "pid")]
    with daemon(argv, log=tmp_path / "log"):
        wait_for(lambda: tcp_listening(ip, 1723), what="pptpd")
        yield ip


def test_pptp_real_pptpd(pptpd):
    obs = run_probe("pptp", f"pptp://{pptpd}")
    ctl = op(obs, "pptp_control")
    assert ctl["failure"] is None, ctl
    assert ctl["parent_id"] == op(obs, "connect")["id"]
    assert ctl["result_code"] == 1 and ctl["result_text"] == "successful channel establishment"
    assert ctl["protocol_version"] == "1.0"
    assert ctl["vendor"]  # pptpd announces its vendor string
    assert ctl["bytes_received"] == 156


def test_pptp_refused_and_garbage():
    obs = run_probe("pptp", f"127.0.0.1:{free_port()}")
    assert op(obs, "connect")["failure"] == "connection_refused"
    def script(c: socket.socket) -> None:
        c.recv(200)
        c.sendall(b"HTTP/1.0 400 Bad\r\n\r\n")

    port, srv = scripted_peer(script)
    obs = run_probe("pptp", f"127.0.0.1:{port}", timeout=5.0)
    srv.close()
    assert op(obs, "pptp_control")["failure"] == "unknown_failure: protocol_error: implausible message length 18516"


@pytest.fixture
def xl2tpd(tmp_path: Path):
    port = free_port(socket.SOCK_DGRAM)
    conf = tmp_path / "xl2tpd.conf"
    conf.write_text(
        f"[global]\nlisten-addr = 127.0.0.1\nport = {port}\n\n"
        "[lns default]\nip range = 192.0.2.10-192.0.2.20\nlocal ip = 192.0.2.1\n"
        "hostname = censorscope-test-lns\nrequire authentication = no\n"
    )
    log = tmp_path / "log"
    argv = [need("xl2tpd"), "-D", "-c", str(conf), "-p", str(tmp_path / "pid"), "-C", str(tmp_path / "control")]
    with daemon(argv, log=log):
        wait_for(lambda: log_has(log, "Listening on IP address"), what="xl2tpd")
        yield port


def test_l2tp_real_xl2tpd(xl2tpd):
    obs = run_probe("l2tp", f"l2tp://127.0.0.1:{xl2tpd}")
    ctl = op(obs, "l2tp_control")
    assert ctl["failure"] is None, ctl
    assert ctl["message_type"] == "SCCRP"
    assert ctl["tunnel_id"] == ctl["assigned_tunnel_id_sent"]  # the SCCRP is addressed to our tunnel
    assert 0 < ctl["assigned_tunnel_id"] <= 0xFFFF
    assert ctl["avps"]["host_name"] == "censorscope-test-lns"
    assert ctl["avps"]["protocol_version"] == "1.0"
    assert ctl["stopccn_sent"] is True


def test_l2tp_refused_timeout_garbage():
    port = free_port(socket.SOCK_DGRAM)
    obs = run_probe("l2tp", f"127.0.0.1:{port}", timeout=2.0)
    assert op(obs, "l2tp_control")["failure"] == "connection_refused"  # ICMP port unreachable
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    obs = run_probe("l2tp", f"127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
    assert op(obs, "l2tp_control")["failure"] == "generic_timeout_error"
    silent.close()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))

    def answer() -> None:
        data, addr = silent.recvfrom(2048)
        silent.sendto(b"\xc8\x02" + struct.pack("!H", 99) + b"\x00" * 8, addr)

    threading.Thread(target=answer, daemon=True).start()
    obs = run_probe("l2tp", f"127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
    silent.close()
    assert op(obs, "l2tp_control")["failure"] == "unknown_failure: protocol_error: length field 99 != 12 bytes"
