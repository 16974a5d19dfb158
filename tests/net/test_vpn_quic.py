"""quic probe against a real aioquic server on loopback; certificate verification judged separately."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from vpn_certs import make_pki
from vpn_support import free_port, op, run_probe

from censorscope.probes import quic as quic_probe
from censorscope.probes.net import Net

pytestmark = pytest.mark.net


@pytest.fixture(scope="module")
def quic_server(tmp_path_factory):
    from aioquic.asyncio import serve
    from aioquic.quic.configuration import QuicConfiguration

    tmp = tmp_path_factory.mktemp("quic")
    pki = make_pki(tmp, dns=("quic.test",))
    port = free_port(socket.SOCK_DGRAM)
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
    yield {"port": port, "ca": str(pki["ca"])}
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
