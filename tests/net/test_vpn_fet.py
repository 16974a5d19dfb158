"""fet probe: interleaved fet/control connections against a loopback echo server (plain, and one
that emulates the GFW's fully-encrypted-traffic rule), and a real Shadowsocks AEAD round trip
through ss-server to a loopback HTTP server."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest
from vpn_support import daemon, free_port, need, run_probe, serving_peer, tcp_listening, wait_for

from censorscope.probes.wire import fet as rules

pytestmark = pytest.mark.net


def _server(drop_non_exempt: bool) -> tuple[int, socket.socket]:
    """Echo the first payload; with ``drop_non_exempt``, stay silent on non-exempt first payloads
    (what a client sees when the censor drops the rest of the flow)."""
    def handle(c: socket.socket) -> None:
        c.settimeout(5)
        data = c.recv(65536)
        if drop_non_exempt and not rules.is_exempt(data):
            c.recv(1)  # wait for the client to give up
            return
        c.sendall(data)

    return serving_peer(handle)


def test_fet_plan_and_echo():
    port, srv = _server(False)
    try:
        obs = run_probe("fet", f"fet://127.0.0.1:{port}", interval=0.0, followup_delay=0.1, read_timeout=2.0)
    finally:
        srv.close()
    plan = [o for o in obs if o["operation"] == "fet_plan"][0]
    assert plan["attempts_needed"] == 16 and plan["attempts"] == 16
    assert plan["miss_probability"] == pytest.approx(0.00758, abs=1e-4)
    att = [o for o in obs if o["operation"] == "fet_attempt"]
    assert [a["kind"] for a in att] == ["fet", "control"] * 16 + ["followup"] * 2
    assert all(a["failure"] is None and a["outcome"] == "data" and a["bytes_received"] == 200 for a in att)
    assert all(a["exemptions"] == [] for a in att if a["kind"] == "fet")
    assert all(a["exemptions"] for a in att if a["kind"] != "fet")
    conns = {o["id"] for o in obs if o["operation"] == "connect"}
    assert all(a["parent_id"] in conns for a in att)


def test_fet_against_emulated_rule():
    port, srv = _server(True)
    try:
        obs = run_probe("fet", f"127.0.0.1:{port}", attempts=3, interval=0.0, followups=1, followup_delay=0.0,
                        read_timeout=0.5)
    finally:
        srv.close()
    att = [o for o in obs if o["operation"] == "fet_attempt"]
    assert [(a["kind"], a["failure"]) for a in att] == [
        ("fet", "generic_timeout_error"), ("control", None)] * 3 + [("followup", None)]


def test_fet_refused():
    obs = run_probe("fet", f"127.0.0.1:{free_port()}", attempts=1, followups=0)
    assert [o["failure"] for o in obs if o["operation"] == "connect"] == ["connection_refused"] * 2


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"hello through shadowsocks\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("method", ["chacha20-ietf-poly1305", "aes-256-gcm"])
def test_shadowsocks_round_trip_through_ss_server(tmp_path: Path, http_server, method):
    port = free_port()
    argv = [need("ss-server"), "-s", "127.0.0.1", "-p", str(port), "-k", "correct horse", "-m", method, "-v"]
    with daemon(argv, log=tmp_path / "ss.log"):
        wait_for(lambda: tcp_listening("127.0.0.1", port), what="ss-server")
        cfg = tmp_path / "ss.toml"
        cfg.write_text(f'ss_password = "correct horse"\nss_method = "{method}"\nss_dest = "127.0.0.1:{http_server}"\n')
        obs = run_probe("fet", f"fet://127.0.0.1:{port}", config=str(cfg), shadowsocks_only=True)
        rt = [o for o in obs if o["operation"] == "shadowsocks_round_trip"][0]
        assert rt["failure"] is None, (rt, (tmp_path / "ss.log").read_text())
        assert rt["response_head"].startswith("HTTP/1.0 200")
        assert "hello through shadowsocks" in rt["response_head"]
        assert rt["first_packet_exemptions"] in ([], ["ex1_popcount"])  # random-looking, as the GFW sees it
        # the wrong password: ss-server cannot authenticate us and never answers
        cfg.write_text(f'ss_password = "wrong"\nss_method = "{method}"\nss_dest = "127.0.0.1:{http_server}"\n'
                       "timeout = 2.0\n")
        obs = run_probe("fet", f"fet://127.0.0.1:{port}", config=str(cfg), shadowsocks_only=True)
        rt = [o for o in obs if o["operation"] == "shadowsocks_round_trip"][0]
        assert rt["failure"] in ("eof_error", "generic_timeout_error", "connection_reset"), rt
