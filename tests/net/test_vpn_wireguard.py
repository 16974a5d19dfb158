"""wireguard probe against wireguard-go in a throwaway namespace (real Noise handshake)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from vpn_support import daemon, free_port, need, netns, op, run_probe, run_probe_in, wait_for

from censorscope.probes.wire import wireguard as wgwire

pytestmark = pytest.mark.lab


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def wg_server(tmp_path_factory):
    """wireguard-go with one peer (our client key) and a preshared key, listening on 127.0.0.1:51820."""
    tmp = tmp_path_factory.mktemp("wg")
    server_priv, client_priv, psk = os.urandom(32), os.urandom(32), os.urandom(32)
    (tmp / "priv").write_text(_b64(server_priv))
    (tmp / "psk").write_text(_b64(psk))
    ifname = f"wgcs{os.getpid() % 10000}{os.urandom(2).hex()}"[:15]
    with netns() as ns:
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1")
        with daemon([need("wireguard-go"), "-f", ifname], log=tmp / "log", netns=ns, env=env):
            wait_for(lambda: Path(f"/var/run/wireguard/{ifname}.sock").exists(), what="wireguard-go socket")
            subprocess.run(["ip", "netns", "exec", ns, need("wg"), "set", ifname, "private-key", str(tmp / "priv"),
                            "listen-port", "51820", "peer", _b64(wgwire.public_key(client_priv)),
                            "preshared-key", str(tmp / "psk"), "allowed-ips", "192.0.2.2/32"], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", ifname, "up"], check=True)
            yield {"ns": ns, "server_pub": wgwire.public_key(server_priv), "client_priv": client_priv, "psk": psk,
                   "ifname": ifname, "tmp": tmp}


def test_wireguard_real_handshake(wg_server):
    s = wg_server
    obs = run_probe_in(s["ns"], "wireguard", f"wireguard://127.0.0.1:51820?pubkey={_b64(s['server_pub'])}",
                       private_key=_b64(s["client_priv"]), preshared_key=_b64(s["psk"]))
    hs = op(obs, "wireguard_handshake")
    assert hs["failure"] is None, hs
    assert hs["mode"] == "handshake" and hs["responses"][0]["type"] == "handshake_response"
    assert hs["responses"][0]["valid"] is True and hs["bytes_sent"] == 148
    assert hs["keepalive_sent"] is True
    # the keepalive (our first transport message) decrypted on the server: it now records the handshake

    def server_saw_handshake() -> bool:
        out = subprocess.run(["ip", "netns", "exec", s["ns"], "wg", "show", s["ifname"], "latest-handshakes"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1] != "0"

    wait_for(server_saw_handshake, timeout=10, what="handshake recorded by wireguard-go")


def test_wireguard_same_peer_twice_at_once_both_verify(wg_server):
    """Two handshakes of one client key at the same moment (a vantage and its control sharing a config,
    as lab evaluate runs them): wireguard-go drops a peer's initiation within 20 ms of the previous
    one, so the loser must retransmit rather than be recorded as unanswered (a false "blocked")."""
    import threading

    s = wg_server
    time.sleep(0.2)
    results: list[list[dict]] = []
    start = threading.Barrier(2)

    def one() -> None:
        start.wait()
        results.append(run_probe_in(s["ns"], "wireguard", f"wireguard://127.0.0.1:51820?pubkey={_b64(s['server_pub'])}",
                                    private_key=_b64(s["client_priv"]), preshared_key=_b64(s["psk"]), timeout=4.0))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    hss = [op(obs, "wireguard_handshake") for obs in results]
    assert len(hss) == 2 and all(hs["failure"] is None for hs in hss), hss
    assert all(hs["initiations_sent"] == len(hs["initiation_times"]) == len(hs["sender_indexes"]) for hs in hss)
    assert all(hs["bytes_sent"] == 148 * hs["initiations_sent"] for hs in hss)
    time.sleep(0.2)


def test_wireguard_wrong_psk_does_not_verify(wg_server):
    s = wg_server
    # wireguard-go ignores a peer's initiations that come within 20 ms of the previous one
    # (its handshake flood limit); leave a gap after the previous test's handshake
    time.sleep(0.2)
    obs = run_probe_in(s["ns"], "wireguard", "wireguard://127.0.0.1:51820", pubkey=_b64(s["server_pub"]),
                       private_key=_b64(s["client_priv"]), preshared_key=_b64(os.urandom(32)), timeout=2.0)
    hs = op(obs, "wireguard_handshake")
    # the server answers (it cannot know the psk is wrong) but the response does not verify for us
    assert hs["failure"] == "unknown_failure: protocol_error: AEAD tag does not verify", hs


def test_wireguard_unknown_peer(wg_server, tmp_path):
    s = wg_server
    wgq = tmp_path / "client.conf"
    wgq.write_text(f"[Interface]\nAddress = 192.0.2.3/32\n\n[Peer]\nPublicKey = {_b64(s['server_pub'])}\n")
    obs = run_probe_in(s["ns"], "wireguard", "127.0.0.1:51820", config=str(wgq), timeout=1.5)
    hs = op(obs, "wireguard_handshake")
    assert hs["mode"] == "unknown_peer" and hs["response_expected"] is False
    assert hs["failure"] is None and hs["outcome"] == "no_response_expected" and hs["responses"] == []


@pytest.mark.net
def test_wireguard_refused_and_garbage():
    obs = run_probe("wireguard", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", pubkey=_b64(os.urandom(32)),
                    private_key=_b64(os.urandom(32)), timeout=2.0)
    assert op(obs, "wireguard_handshake")["failure"] == "connection_refused"
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    import threading

    def answer() -> None:
        _, addr = srv.recvfrom(2048)
        srv.sendto(b"\x02\x00\x00\x00" + b"\x00" * 20, addr)

    threading.Thread(target=answer, daemon=True).start()
    obs = run_probe("wireguard", f"127.0.0.1:{srv.getsockname()[1]}", pubkey=_b64(os.urandom(32)),
                    private_key=_b64(os.urandom(32)), timeout=2.0)
    srv.close()
    hs = op(obs, "wireguard_handshake")
    assert hs["failure"] == "unknown_failure: protocol_error: handshake_response of 24 bytes, expected 92"
