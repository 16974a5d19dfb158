"""Each declared ``worst_case`` bounds a real run of its probe down its slow path, on loopback.

The servers stay silent (or stall mid-answer), so every step waits out its
timeout: the runs the watchdog must let finish. Each run must end within
``WORST_CASE_MARGIN`` x the probe's own figure (what the runner grants it);
no absolute times are asserted. The observations are checked too, so that a
run that took a short cut cannot pass for a slow one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from dns_servers import UDPServer, answer
from vpn_support import serve_each, serving

from censorscope.measure.runner import WORST_CASE_MARGIN
from censorscope.probes import registry
from censorscope.probes.net import Net

pytestmark = pytest.mark.net

T = 0.5  # every probe's timeout in these runs


def _run(name: str, target: str, net: Net | None = None, **options: object) -> tuple[list[dict], float, float]:
    """Observations, elapsed seconds and the declared worst case of one measurement."""
    module = registry.load(name)
    opts = module.Options(**options)
    worst = module.worst_case(target, opts)
    t0 = time.monotonic()
    obs = asyncio.run(module.measure(target, net or Net(), opts))
    elapsed = time.monotonic() - t0
    assert elapsed <= WORST_CASE_MARGIN * worst, (name, elapsed, worst)
    return [o.to_dict() for o in obs], elapsed, worst


def _failures(obs: list[dict], operation: str) -> list[str | None]:
    return [o["failure"] for o in obs if o["operation"] == operation]


def _hold(c: socket.socket) -> None:
    """Say nothing; keep the connection until the client closes it."""
    c.settimeout(30)
    while c.recv(65536):
        pass


@pytest.fixture
def silent_tcp() -> Iterator[int]:
    with serving(_hold) as port:
        yield port


@pytest.fixture
def silent_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _same_port_udp_and_tcp() -> tuple[socket.socket, int, socket.socket]:
    """A silent UDP socket and a listener on the same port number (QUIC, then TLS over TCP)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        try:
            port2, srv = _serving_on(port, _hold)
        except OSError:
            udp.close()
            continue
        return udp, port2, srv
    raise RuntimeError("no port free for both UDP and TCP")


def _serving_on(port: int, script: Callable[[socket.socket], None]) -> tuple[int, socket.socket]:
    srv = socket.socket()
    try:
        srv.bind(("127.0.0.1", port))
    except OSError:
        srv.close()
        raise
    srv.listen(16)
    serve_each(srv, script)
    return port, srv


def _stalling_http(c: socket.socket) -> None:
    """Answer the request's headers and a little of a long body, then stall."""
    c.settimeout(30)
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000000\r\n\r\n<html>")
    while c.recv(65536):
        pass


def test_fet_bound_with_every_connection_timing_out(silent_tcp):
    obs, _, _ = _run("fet", f"fet://127.0.0.1:{silent_tcp}", attempts=1, followups=2, followup_delay=0.2,
                     interval=0.1, read_timeout=T, timeout=T)
    assert _failures(obs, "fet_attempt") == ["generic_timeout_error"] * 4


def test_web_bound_tls_stalled(silent_tcp):
    obs, _, _ = _run("web", f"https://127.0.0.1:{silent_tcp}/", timeout=T, http_timeout=2 * T)
    assert _failures(obs, "tls_handshake") == ["generic_timeout_error"]


def test_web_bound_slow_dns_then_a_stalled_body():
    # A answered after a while, AAAA never: the resolution waits out the timeout
    with serving(_stalling_http) as port, UDPServer(
            lambda q: [(0.2, answer(q, "127.0.0.1"), "server")] if q.question[0].rdtype == 1 else []) as dns:
        obs, _, _ = _run("web", f"http://site.example:{port}/", resolver=dns.address, timeout=T,
                         hold_window=0.2, http_timeout=2 * T)
    by_type = {o["query_type"]: o["failure"] for o in obs if o["operation"] == "dns_query"}
    assert by_type == {"A": None, "AAAA": "generic_timeout_error"}
    assert _failures(obs, "http_round_trip") == ["generic_timeout_error"]


def test_web_bound_silent_resolver(silent_udp):
    obs, _, _ = _run("web", "https://site.example/", resolver=f"127.0.0.1:{silent_udp}", timeout=T)
    assert _failures(obs, "dns_query") == ["generic_timeout_error"] * 2


def test_throughput_bound_stalled_transfer():
    with serving(_stalling_http) as port:
        obs, _, _ = _run("throughput", f"http://127.0.0.1:{port}/", timeout=T, max_time=2 * T)
    [tp] = [o for o in obs if o["operation"] == "throughput"]
    assert tp["failure"] is None and tp["stopped"] == "max_time"


def test_throughput_bound_no_headers(silent_tcp):
    obs, _, _ = _run("throughput", f"http://127.0.0.1:{silent_tcp}/", timeout=T, max_time=T / 2)
    assert _failures(obs, "throughput") == ["generic_timeout_error"]


def test_dns_bounds_udp_and_tcp(silent_udp, silent_tcp):
    obs, _, _ = _run("dns", "site.example", resolver=f"127.0.0.1:{silent_udp}", qtype="both", timeout=T)
    assert _failures(obs, "dns_query") == ["generic_timeout_error"] * 2
    obs, _, _ = _run("dns", "site.example", resolver=f"127.0.0.1:{silent_tcp}", transport="tcp", timeout=T)
    assert _failures(obs, "dns_query") == ["generic_timeout_error"]


def test_dns_bound_answer_then_hold_window():
    with UDPServer(lambda q: [(0.3, answer(q, "203.0.113.7"), "server")]) as dns:
        obs, elapsed, _ = _run("dns", "site.example", resolver=dns.address, timeout=T, hold_window=0.4)
    assert _failures(obs, "dns_query") == [None]
    assert elapsed >= 0.3 + 0.4 * 0.9  # it did wait out the hold window after the late answer


def test_openvpn_bounds_udp_and_tcp(silent_udp, silent_tcp):
    obs, _, _ = _run("openvpn", f"openvpn://127.0.0.1:{silent_udp}?proto=udp", timeout=T)
    assert _failures(obs, "openvpn_handshake") == ["generic_timeout_error"]
    obs, _, _ = _run("openvpn", f"openvpn://127.0.0.1:{silent_tcp}?proto=tcp", timeout=T)
    assert _failures(obs, "openvpn_handshake") == ["generic_timeout_error"]


def test_tor_bound_or_port_and_directory_silent(silent_tcp):
    with serving(_hold) as dport:
        obs, _, _ = _run("tor", f"tor://127.0.0.1:{silent_tcp}", timeout=T, dirport=dport)
    assert _failures(obs, "tor_handshake") == ["generic_timeout_error"]
    assert _failures(obs, "tor_directory") == ["generic_timeout_error"]


def test_ikev2_bound_silent_responder(silent_udp):
    obs, _, _ = _run("ikev2", f"ikev2://127.0.0.1:{silent_udp}", timeout=T)
    assert _failures(obs, "ikev2_sa_init") == ["generic_timeout_error"]


def test_quic_bound_quic_and_tls_both_silent():
    udp, port, srv = _same_port_udp_and_tcp()
    try:
        obs, _, _ = _run("quic", f"quic://127.0.0.1:{port}?sni=site.example", timeout=T)
    finally:
        srv.close()
        udp.close()
    assert _failures(obs, "quic_handshake") == ["generic_timeout_error"]
    assert _failures(obs, "tls_handshake") == ["generic_timeout_error"]



def test_sstp_bound_tls_stalled(silent_tcp):
    obs, _, _ = _run("sstp", f"sstp://127.0.0.1:{silent_tcp}?sni=vpn.example", timeout=T)
    assert _failures(obs, "sstp_handshake") == ["generic_timeout_error"]


def test_ssh_bound_banner_then_silence():
    def banner_only(c: socket.socket) -> None:
        c.settimeout(30)
        c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        while c.recv(65536):
            pass

    with serving(banner_only) as port:
        obs, _, _ = _run("ssh", f"ssh://127.0.0.1:{port}", timeout=T)
    [hs] = [o for o in obs if o["operation"] == "ssh_handshake"]
    assert hs["failure"] == "generic_timeout_error" and hs["software_version"] == "OpenSSH_9.2p1"


def test_socks_bound_method_chosen_then_no_connect_reply():
    def method_only(c: socket.socket) -> None:
        c.settimeout(30)
        c.recv(65536)
        c.sendall(b"\x05\x00")  # no authentication; then the CONNECT reply never comes
        while c.recv(65536):
            pass

    with serving(method_only) as port:
        obs, _, _ = _run("socks", f"socks://127.0.0.1:{port}?dest=203.0.113.5:80", timeout=T)
    [pc] = [o for o in obs if o["operation"] == "proxy_connect"]
    assert pc["failure"] == "generic_timeout_error" and pc["method"] == 0


def test_openvpn_bound_control_phase_silent(tmp_path):
    """The server answers the hard reset, then never speaks TLS: the control phase waits out its
    timeout (retransmitting), the path a CA in the config adds to the bound."""
    from vpn_certs import make_pki

    from censorscope.probes.wire import openvpn as wire

    pki = make_pki(tmp_path)
    cfg = tmp_path / "client.toml"
    cfg.write_text(f'ca = "{pki["ca"]}"\n', encoding="utf-8")
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    received: list[wire.Packet] = []

    def serve() -> None:
        sid = os.urandom(8)
        while not stop.is_set():
            try:
                data, peer = server.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            p = wire.parse(data)
            received.append(p)
            if p.opcode == wire.HARD_RESET_CLIENT_V2 and len(received) == 1:
                server.sendto(wire.build(wire.Packet(opcode=8, key_id=0, session_id=sid, acks=[p.packet_id or 0],
                                                     remote_session_id=p.session_id, packet_id=0)), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        obs, _, _ = _run("openvpn", f"openvpn://127.0.0.1:{server.getsockname()[1]}?proto=udp", timeout=2 * T,
                         config=str(cfg))
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert _failures(obs, "openvpn_handshake") == [None]
    assert _failures(obs, "tls_handshake") == ["generic_timeout_error"]
    assert len(received) >= 2  # the reset, then the client's TLS flight (and its retransmissions)
