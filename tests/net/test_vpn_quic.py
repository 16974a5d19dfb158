"""quic probe against a real aioquic server on loopback; certificate verification judged separately."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import pytest
from vpn_certs import make_pki
from vpn_support import free_port, op, run_probe, serve_each

from censorscope.probes import quic as quic_probe
from censorscope.probes.net import Net

pytestmark = pytest.mark.net


def _tls_over_tcp(pki: dict, srv: socket.socket) -> None:
    """Serve TLS handshakes (ALPN h2) on a listening TCP socket until it is closed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
    ctx.set_alpn_protocols(["h2", "http/1.1"])

    def handshake(c: socket.socket) -> None:
        with ctx.wrap_socket(c, server_side=True) as s:
            s.recv(1)

    serve_each(srv, handshake)


def _port_with_tls_over_tcp(pki: dict) -> tuple[int, socket.socket]:
    """A port free for UDP (QUIC) on which TLS over TCP is served too."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        srv = socket.socket()
        try:
            srv.bind(("127.0.0.1", port))
        except OSError:
            srv.close()
            continue
        srv.listen(16)
        _tls_over_tcp(pki, srv)
        return port, srv
    raise AssertionError("no port free for both UDP and TCP")


@pytest.fixture(scope="module")
def quic_server(tmp_path_factory):
    from aioquic.asyncio import serve
    from aioquic.quic.configuration import QuicConfiguration

    tmp = tmp_path_factory.mktemp("quic")
    pki = make_pki(tmp, dns=("quic.test",))
    port, tcp_srv = _port_with_tls_over_tcp(pki)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        conf = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop"])
        conf.load_cert_chain(str(pki["server_cert"]), str(pki["server_key"]))
        holder["server"] = loop.run_until_complete(serve("127.0.0.1", port, configuration=conf))
        ready.set()
        loop.run_forever()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    assert ready.wait(10)
    yield {"port": port, "ca": str(pki["ca"]), "pki": pki}
    tcp_srv.close()
    loop.call_soon_threadsafe(holder["server"].close)
    loop.call_soon_threadsafe(loop.stop)
    th.join(5)


def _run(target: str, ca: str | None, **opts) -> list[dict]:
    net = Net(ca_file=ca)
    obs = asyncio.run(quic_probe.measure(target, net, quic_probe.Options(**opts)))
    return [o.to_dict() for o in obs]


def test_quic_handshake_verified(quic_server):
    obs = _run(f"quic://127.0.0.1:{quic_server['port']}?sni=quic.test", quic_server["ca"])
    hs = op(obs, "quic_handshake")
    assert hs["failure"] is None, hs
    assert hs["version"] == "0x00000001" and hs["alpn"] == "h3" and hs["server_name"] == "quic.test"
    assert hs["peer_certificates"][0]["sans"] == ["127.0.0.1", "quic.test"]
    assert hs["verification"] == {"ok": True, "failure": None, "hostname_ok": True, "detail": None}
    tls = op(obs, "tls_handshake")  # the same name over TCP, for comparison
    assert tls["failure"] is None and tls["compare_with"] == "quic_handshake" and tls["alpn"] == "h2"
    assert tls["verification"]["ok"] is True


def test_quic_silent_while_tls_over_tcp_works(quic_server):
    """The distinguishing case: nothing answers QUIC on the port, TLS over TCP does."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    _tls_over_tcp(quic_server["pki"], srv)
    obs = _run(f"quic://127.0.0.1:{srv.getsockname()[1]}?sni=quic.test", quic_server["ca"], timeout=2.0)
    srv.close()
    assert op(obs, "quic_handshake")["failure"] == "generic_timeout_error"
    assert op(obs, "tls_handshake")["failure"] is None and op(obs, "connect")["failure"] is None


def test_quic_verification_failures_are_separate(quic_server):
    # wrong name: the handshake succeeds, verification says ssl_invalid_hostname
    hs = op(_run(f"quic://127.0.0.1:{quic_server['port']}?sni=other.test", quic_server["ca"]), "quic_handshake")
    assert hs["failure"] is None and hs["verification"]["ok"] is False
    assert hs["verification"]["failure"] == "ssl_invalid_hostname"
    # CA not trusted: ssl_unknown_authority
    hs = op(_run(f"quic://127.0.0.1:{quic_server['port']}?sni=quic.test", None), "quic_handshake")
    assert hs["failure"] is None and hs["verification"]["failure"] == "ssl_unknown_authority"


def test_quic_alpn_mismatch_and_nothing_listening(quic_server):
    hs = op(_run(f"quic://127.0.0.1:{quic_server['port']}?sni=quic.test", quic_server["ca"], alpn=["nope"],
                 timeout=5.0), "quic_handshake")
    assert hs["failure"] == "ssl_failed_handshake", hs
    assert hs["close_error_code"] == 0x178 and "ALPN" in hs["close_reason"]  # CRYPTO_ERROR + no_application_protocol
    obs = run_probe("quic", f"quic://127.0.0.1:{free_port(socket.SOCK_DGRAM)}?sni=quic.test", timeout=2.0)
    assert op(obs, "quic_handshake")["failure"] == "generic_timeout_error"
