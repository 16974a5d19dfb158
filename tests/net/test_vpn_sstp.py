"""sstp probe against a real SSTP server (sstp-server from PyPI, ``sstpd``) on loopback.

No PPP exists in this kernel, so sstpd's pppd cannot bring a tunnel up; the
call setup (HTTP 200 and CALL_CONNECT_ACK with a crypto binding request)
happens before pppd matters.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

import pytest
from vpn_certs import make_pki
from vpn_support import VENV_BIN, daemon, free_port, op, run_probe, tcp_listening, wait_for

from censorscope.probes import sstp as sstp_probe
from censorscope.probes.net import Net

pytestmark = pytest.mark.net


@pytest.fixture(scope="module")
def sstpd(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("sstp")
    pki = make_pki(tmp, dns=("vpn.test",))
    port = free_port()
    (tmp / "options").write_text("")
    argv = [str(VENV_BIN / "sstpd"), "-l", "127.0.0.1", "-p", str(port), "-c", str(pki["server_cert"]),
            "-k", str(pki["server_key"]), "--local", "192.0.2.1", "--remote", "192.0.2.0/24",
            "--pppd", "/bin/false", "--pppd-config", str(tmp / "options"), "-v", "10"]
    assert Path(argv[0]).exists(), "sstp-server is not installed (pip install -e '.[test]')"
    with daemon(argv, log=tmp / "log"):
        wait_for(lambda: tcp_listening("127.0.0.1", port), what="sstpd")
        yield {"port": port, "ca": str(pki["ca"]), "log": tmp / "log"}


def test_sstp_call_setup(sstpd):
    obs = asyncio.run(sstp_probe.measure(f"sstp://127.0.0.1:{sstpd['port']}?sni=vpn.test", Net(ca_file=sstpd["ca"]),
                                         sstp_probe.Options()))
    hs = op([o.to_dict() for o in obs], "sstp_handshake")
    assert hs["failure"] is None, (hs, sstpd["log"].read_text()[-2000:])
    assert hs["status"] == 200 and hs["sstp_message"] == "CALL_CONNECT_ACK"
    assert hs["sstp_attributes"] == ["CRYPTO_BINDING_REQ"]
    assert hs["verification"]["ok"] is True and hs["peer_certificate"]["sans"] == ["127.0.0.1", "vpn.test"]


def test_sstp_untrusted_cert_recorded(sstpd):
    hs = op(run_probe("sstp", f"127.0.0.1:{sstpd['port']}", sni="vpn.test"), "sstp_handshake")
    assert hs["failure"] is None and hs["verification"]["failure"] == "ssl_unknown_authority"


def _tls_server(response: bytes, tmp: Path) -> tuple[int, socket.socket]:
    pki = make_pki(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        try:
            c, _ = srv.accept()
            with ctx.wrap_socket(c, server_side=True) as s:
                s.recv(4096)
                s.sendall(response)
                s.recv(4096)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], srv


def test_sstp_plain_web_server_and_refused(tmp_path):
    port, srv = _tls_server(b"HTTP/1.1 405 Method Not Allowed\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n", tmp_path)
    hs = op(run_probe("sstp", f"127.0.0.1:{port}", timeout=5.0), "sstp_handshake")
    srv.close()
    assert hs["failure"] == "unknown_failure: sstp_http_status: 405" and ["Server", "nginx"] in hs["headers"]
    assert op(run_probe("sstp", f"127.0.0.1:{free_port()}"), "connect")["failure"] == "connection_refused"


def test_sstp_garbage_after_200(tmp_path):
    port, srv = _tls_server(b"HTTP/1.1 200 OK\r\n\r\n\x01\x02\x03\x04", tmp_path)
    hs = op(run_probe("sstp", f"127.0.0.1:{port}", timeout=5.0), "sstp_handshake")
    srv.close()
    assert hs["failure"] == "unknown_failure: protocol_error: SSTP version 0x01, expected 0x10"
