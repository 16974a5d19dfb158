"""tor probe against a real, offline tor bridge (with obfs4) and relay, each in a throwaway namespace.

Tor must never reach the real network: each daemon runs in a namespace with
only ``lo`` (no route anywhere), so its attempts to contact directory
authorities fail locally. Offline, tor gets no consensus, but its OR port,
obfs4 listener and directory port answer.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from vpn_support import (
    daemon,
    free_port,
    log_has,
    need,
    netns,
    op,
    run_probe,
    run_probe_in,
    scripted_peer,
    wait_for,
)

pytestmark = pytest.mark.lab


def _torrc(tmp: Path, extra: str) -> Path:
    data = tmp / "data"
    data.mkdir(mode=0o700)
    rc = tmp / "torrc"
    rc.write_text(
        f"SocksPort 0\nAssumeReachable 1\nPublishServerDescriptor 0\nExitRelay 0\nExitPolicy reject *:*\n"
        f"DataDirectory {data}\nLog notice file {tmp}/tor.log\n{extra}"
    )
    return rc


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torbridge")
    rc = _torrc(tmp, "BridgeRelay 1\nORPort 127.0.0.1:9001\n"
                     f"ServerTransportPlugin obfs4 exec {need('obfs4proxy')}\n"
                     "ServerTransportListenAddr obfs4 127.0.0.1:9002\nExtORPort auto\n")
    log = tmp / "tor.log"
    with netns() as ns, daemon([need("tor"), "-f", str(rc)], netns=ns):
        wait_for(lambda: log_has(log, "Registered server transport 'obfs4'"), timeout=90, what="tor bridge")
        wait_for(lambda: (tmp / "data/pt_state/obfs4_bridgeline.txt").exists(), what="obfs4 bridge line")
        fp = (tmp / "data/fingerprint").read_text().split()[1]
        cert_line = [x for x in (tmp / "data/pt_state/obfs4_bridgeline.txt").read_text().splitlines()
                     if x.startswith("Bridge obfs4")][0]
        args = " ".join(w for w in cert_line.split() if "=" in w)
        yield {"ns": ns, "fp": fp, "obfs4_args": args, "log": log}


def test_tor_or_port_handshake(bridge):
    obs = run_probe_in(bridge["ns"], "tor", f"tor://127.0.0.1:9001?fp={bridge['fp']}")
    hs = op(obs, "tor_handshake")
    assert hs["failure"] is None, hs
    assert hs["via"] == "direct" and hs["link_protocol"] == 5 and 5 in hs["server_versions"]
    assert hs["cells"][:2] == ["VERSIONS", "CERTS"] and hs["cells"][-1] == "NETINFO"
    assert "rsa_identity_x509" in hs["cert_types"] and "ed25519_signing" in hs["cert_types"]
    assert hs["fingerprint"] == bridge["fp"] and hs["fingerprint_match"] is True
    assert hs["netinfo"]["other_address"] == "127.0.0.1"
    assert hs["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert hs["parent_id"] == op(obs, "connect")["id"]


def test_tor_wrong_fingerprint_is_recorded(bridge):
    obs = run_probe_in(bridge["ns"], "tor", "127.0.0.1:9001", fingerprint="A" * 40)
    hs = op(obs, "tor_handshake")
    assert hs["failure"] is None and hs["fingerprint_match"] is False


def test_tor_obfs4_bridge_through_obfs4proxy(bridge):
    line = f"obfs4 127.0.0.1:9002 {bridge['fp']} {bridge['obfs4_args']}"
    obs = run_probe_in(bridge["ns"], "tor", "unused", bridge=line)
    launch = op(obs, "pt_launch")
    assert launch["failure"] is None and launch["socks"].startswith("127.0.0.1:")
    pc = op(obs, "proxy_connect")
    assert pc["failure"] is None and pc["transport"] == "obfs4"
    hs = op(obs, "tor_handshake")
    assert hs["failure"] is None, hs
    assert hs["via"] == "obfs4" and hs["fingerprint_match"] is True and hs["parent_id"] == pc["id"]
    # a wrong obfs4 cert: the obfs4 handshake fails and obfs4proxy reports it in the SOCKS reply
    bad = line.replace("cert=", "cert=AAAA", 1)
    obs = run_probe_in(bridge["ns"], "tor", "unused", bridge=bad, timeout=20.0)
    pc = op(obs, "proxy_connect")
    assert pc["failure"] is not None and pc["failure"].startswith("unknown_failure:"), pc
    assert not [o for o in obs if o["operation"] == "tor_handshake"]


def test_tor_obfs4_without_obfs4proxy():
    obs = run_probe("tor", "x", bridge="obfs4 127.0.0.1:1 " + "B" * 40 + " cert=x iat-mode=0",
                    obfs4proxy="/nonexistent/obfs4proxy")
    hs = op(obs, "tor_handshake")
    assert hs["failure"] == "unknown_failure: unsupported: obfs4proxy not installed"


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torrelay")
    rc = _torrc(tmp, "ORPort 127.0.0.1:9001\nDirPort 127.0.0.1:9030\n")
    log = tmp / "tor.log"
    with netns() as ns, daemon([need("tor"), "-f", str(rc)], netns=ns):
        wait_for(lambda: log_has(log, "Bootstrapped 0%"), timeout=90, what="tor relay")

        def descriptor_ready() -> bool:
            # the directory port answers 404 until the relay has built its own descriptor
            obs = run_probe_in(ns, "tor", "127.0.0.1:9001", dirport=9030, timeout=5.0)
            return op(obs, "tor_directory").get("status") == 200

        wait_for(descriptor_ready, timeout=60, what="relay descriptor")
        yield {"ns": ns, "log": log}


def test_tor_directory_port(relay):
    obs = run_probe_in(relay["ns"], "tor", "127.0.0.1:9001", dirport=9030)
    d = op(obs, "tor_directory")
    assert d["failure"] is None, (d, relay["log"].read_text()[-1500:])
    assert d["status"] == 200 and d["descriptor"] is True and d["body_length"] > 500


@pytest.mark.net
def test_tor_refused_and_not_tor():
    obs = run_probe("tor", f"127.0.0.1:{free_port()}", timeout=3.0)
    assert op(obs, "connect")["failure"] == "connection_refused"
    def script(c: socket.socket) -> None:
        c.recv(4096)  # the ClientHello; answer it with plain HTTP, as a non-TLS server would
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        while c.recv(1000):  # hold the connection until the client gives up, so only the bytes decide
            pass

    port, srv = scripted_peer(script)
    obs = run_probe("tor", f"127.0.0.1:{port}", timeout=3.0)
    srv.close()
    assert op(obs, "tor_handshake")["failure"] == "ssl_failed_handshake"


@pytest.mark.net
def test_tor_server_speaking_first_is_recorded():
    """A peer that talks before the TLS handshake (an SSH server, or an injector): whatever the race,
    the failure is a TLS one and bytes TLS never saw are kept as pre_tls_head."""
    def script(c: socket.socket) -> None:
        c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        while c.recv(1000):
            pass

    port, srv = scripted_peer(script)
    obs = run_probe("tor", f"127.0.0.1:{port}", timeout=2.0)
    srv.close()
    hs = op(obs, "tor_handshake")
    assert hs["failure"] in ("ssl_failed_handshake", "generic_timeout_error"), hs
    if hs["failure"] == "generic_timeout_error":
        assert bytes.fromhex(hs["pre_tls_head"]).startswith(b"SSH-2.0-")
