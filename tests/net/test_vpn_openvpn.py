"""openvpn probe against a real OpenVPN 2.6 server (UDP and TCP; plain, tls-auth, tls-crypt).

OpenVPN's server mode needs a tun device, so each server runs in a throwaway
network namespace with only ``lo``; the probe joins that namespace.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from vpn_certs import make_pki
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


def _key(path: Path) -> Path:
    subprocess.run([need("openvpn"), "--genkey", "secret", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("ovpn-pki")
    p = make_pki(d)
    p["ta"] = _key(d / "ta.key")
    p["tc"] = _key(d / "tc.key")
    p["other"] = _key(d / "other.key")
    ovpn = need("openvpn")
    for name in ("v2server", "v2other_server"):
        subprocess.run([ovpn, "--genkey", "tls-crypt-v2-server", str(d / f"{name}.key")], check=True, capture_output=True)
    for client, server in (("v2client", "v2server"), ("v2other", "v2other_server")):
        subprocess.run([ovpn, "--tls-crypt-v2", str(d / f"{server}.key"), "--genkey", "tls-crypt-v2-client",
                        str(d / f"{client}.key")], check=True, capture_output=True)
        p[client] = d / f"{client}.key"
    p["v2server"] = d / "v2server.key"
    return p


def _server(tmp: Path, pki: dict, ns: str, proto: str, wrap: str, port: int, extra: tuple[str, ...] = ()):
    lines = [
        "mode server", "tls-server", "dev tun", "topology subnet", "server 192.0.2.0 255.255.255.0",
        f"proto {'tcp-server' if proto == 'tcp' else 'udp'}", "local 127.0.0.1", f"port {port}",
        f"ca {pki['ca']}", f"cert {pki['server_cert']}", f"key {pki['server_key']}", "dh none", "verb 3",
    ]
    if wrap == "tls-auth":
        lines += [f"tls-auth {pki['ta']} 0", "auth SHA256"]
    elif wrap == "tls-crypt":
        lines += [f"tls-crypt {pki['tc']}"]
    elif wrap == "tls-crypt-v2":
        lines += [f"tls-crypt-v2 {pki['v2server']}"]
    lines += list(extra)
    conf = tmp / f"server-{proto}-{wrap}.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = tmp / f"server-{proto}-{wrap}.log"
    return daemon([need("openvpn"), "--config", str(conf)], log=log, netns=ns), log


@pytest.mark.parametrize("proto,wrap", [("udp", "none"), ("tcp", "none"), ("udp", "tls-auth"),
                                        ("tcp", "tls-auth"), ("udp", "tls-crypt"), ("tcp", "tls-crypt"),
                                        ("udp", "tls-crypt-v2"), ("tcp", "tls-crypt-v2")])
def test_openvpn_real_server(tmp_path, pki, proto, wrap):
    port = 21194
    client = tmp_path / "client.ovpn"
    if wrap == "tls-auth":
        client.write_text(f"client\nauth SHA256\nkey-direction 1\n<tls-auth>\n{pki['ta'].read_text()}</tls-auth>\n")
    elif wrap == "tls-crypt":
        client.write_text(f"client\ntls-crypt {pki['tc']}\n")
    elif wrap == "tls-crypt-v2":
        client.write_text(f"client\n<tls-crypt-v2>\n{pki['v2client'].read_text()}</tls-crypt-v2>\n")
    else:
        client.write_text("client\n")
    with netns() as ns:
        srv, log = _server(tmp_path, pki, ns, proto, wrap, port)
        with srv:
            wait_for(lambda: log_has(log, "Initialization Sequence Completed"), what="openvpn server")
            obs = run_probe_in(ns, "openvpn", f"openvpn://127.0.0.1:{port}?proto={proto}", config=str(client))
            hs = op(obs, "openvpn_handshake")
            assert hs["failure"] is None, (hs, log.read_text()[-2000:])
            assert hs["proto"] == proto and hs["wrap"] == wrap
            assert hs["server_opcode"] == "P_CONTROL_HARD_RESET_SERVER_V2"
            assert hs["acknowledged"] is True and hs["ack_sent"] is True
            assert hs["responses"][0]["remote_session_id"] == hs["client_session_id"]
            assert hs["parent_id"] == op(obs, "connect")["id"]
            if wrap != "none":
                assert hs["authenticated"] is True
            if wrap == "tls-crypt-v2":
                assert hs["client_opcode"] == "P_CONTROL_HARD_RESET_CLIENT_V3"
            # a client with the wrong static key gets no answer at all (the server drops it silently)
            if wrap != "none":
                bad = tmp_path / "bad.ovpn"
                if wrap == "tls-crypt":
                    bad.write_text(client.read_text().replace(str(pki["tc"]), str(pki["other"])))
                elif wrap == "tls-crypt-v2":  # a client key wrapped by another server's key
                    bad.write_text(f"client\ntls-crypt-v2 {pki['v2other']}\n")
                else:
                    bad.write_text(f"client\nauth SHA256\nkey-direction 1\ntls-auth {pki['other']}\n")
                obs = run_probe_in(ns, "openvpn", f"openvpn://127.0.0.1:{port}?proto={proto}", config=str(bad),
                                   timeout=2.0)
                hs = op(obs, "openvpn_handshake")
                assert hs["failure"] in ("generic_timeout_error", "eof_error", "connection_reset"), hs
                assert not any(r.get("opcode") == 8 for r in hs["responses"])


def _client_tls(pki: dict, wrap: str, ca: Path | None = None) -> str:
    text = "client\n"
    if wrap == "tls-auth":
        text += f"auth SHA256\nkey-direction 1\ntls-auth {pki['ta']}\n"
    elif wrap == "tls-crypt":
        text += f"tls-crypt {pki['tc']}\n"
    elif wrap == "tls-crypt-v2":
        text += f"tls-crypt-v2 {pki['v2client']}\n"
    return text + (f"<ca>\n{(ca or pki['ca']).read_text()}</ca>\n<cert>\n{pki['client_cert'].read_text()}</cert>\n"
                   f"<key>\n{pki['client_key'].read_text()}</key>\n")


@pytest.mark.parametrize("proto,wrap", [("udp", "none"), ("tcp", "none"), ("udp", "tls-crypt"), ("tcp", "tls-auth"),
                                        ("udp", "tls-crypt-v2")])
def test_openvpn_tls_over_control_channel(tmp_path, pki, proto, wrap):
    client = tmp_path / "client.ovpn"
    client.write_text(_client_tls(pki, wrap))
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    with netns() as ns:
        srv, log = _server(tmp_path, pki, ns, proto, wrap, 21194)
        with srv:
            wait_for(lambda: log_has(log, "Initialization Sequence Completed"), what="openvpn server")
            obs = run_probe_in(ns, "openvpn", f"openvpn://127.0.0.1:21194?proto={proto}", config=str(client),
                               timeout=10.0)
            hs, tls = op(obs, "openvpn_handshake"), op(obs, "tls_handshake")
            assert hs["failure"] is None, hs
            assert tls["failure"] is None, (tls, log.read_text()[-3000:])
            assert tls["parent_id"] == hs["id"] and tls["transport"] == "openvpn_control"
            assert tls["tls_version"] in ("TLSv1.2", "TLSv1.3")
            assert tls["peer_certificates"][0]["subject"] == "CN=server"
            assert tls["control_packets_received"] >= 1
            kx = op(obs, "openvpn_key_exchange")
            assert kx["failure"] is None and kx["parent_id"] == tls["id"], kx
            assert "tls-server" in kx["server_options"]
            assert kx["push_reply"].startswith("PUSH_REPLY,") and "ifconfig 192.0.2." in kx["push_reply"]
            # the server's certificate does not chain to another CA: the client refuses it, as OpenVPN would
            client.write_text(_client_tls(pki, wrap, ca=other["ca"]))
            obs = run_probe_in(ns, "openvpn", f"openvpn://127.0.0.1:21194?proto={proto}", config=str(client),
                               timeout=10.0)
            assert op(obs, "tls_handshake")["failure"] == "ssl_unknown_authority"


@pytest.mark.net
def test_openvpn_nothing_listening():
    obs = run_probe("openvpn", f"openvpn://127.0.0.1:{free_port(socket.SOCK_DGRAM)}?proto=udp", timeout=2.0)
    assert op(obs, "openvpn_handshake")["failure"] == "connection_refused"
    obs = run_probe("openvpn", f"openvpn://127.0.0.1:{free_port()}?proto=tcp", timeout=2.0)
    assert op(obs, "connect")["failure"] == "connection_refused"


@pytest.mark.net
def test_openvpn_garbage_server():
    def script(c: socket.socket) -> None:
        c.recv(100)
        c.sendall(b"\x00\x05HELLO")

    port, srv = scripted_peer(script)
    obs = run_probe("openvpn", f"openvpn://127.0.0.1:{port}?proto=tcp", timeout=3.0)
    srv.close()
    hs = op(obs, "openvpn_handshake")
    # 'H' = 0x48: opcode 9 (P_DATA_V2), not a control packet
    assert hs["failure"] == "unknown_failure: protocol_error: data-channel packet (P_DATA_V2)", hs
    assert hs["responses"][0]["size"] == 5


def test_openvpn_toml_config(tmp_path, pki):
    """The same client settings as TOML: tls-auth key and PKI as file paths (relative to the config)."""
    cfg = tmp_path / "client.toml"
    cfg.write_text(
        f'proto = "udp"\ntls_auth = "{pki["ta"]}"\nkey_direction = 1\nauth = "SHA256"\n'
        f'ca = "{pki["ca"]}"\ncert = "{pki["client_cert"]}"\nkey = "{pki["client_key"]}"\ntimeout = 10.0\n'
    )
    with netns() as ns:
        srv, log = _server(tmp_path, pki, ns, "udp", "tls-auth", 21194)
        with srv:
            wait_for(lambda: log_has(log, "Initialization Sequence Completed"), what="openvpn server")
            obs = run_probe_in(ns, "openvpn", "127.0.0.1:21194", config=str(cfg))
            hs, tls = op(obs, "openvpn_handshake"), op(obs, "tls_handshake")
            assert hs["failure"] is None and hs["wrap"] == "tls-auth" and hs["authenticated"] is True
            assert tls["failure"] is None, tls


def test_openvpn_auth_failed_is_recorded(tmp_path, pki):
    """A server that checks passwords (auth-user-pass-verify /bin/false rejects all): with a username
    it answers AUTH_FAILED; without one it ends the TLS session (eof)."""
    client = tmp_path / "client.ovpn"
    client.write_text(_client_tls(pki, "none") + "<auth-user-pass>\nalice\nwrong\n</auth-user-pass>\n")
    nocreds = tmp_path / "nocreds.ovpn"
    nocreds.write_text(_client_tls(pki, "none"))
    extra = ("script-security 2", "auth-user-pass-verify /bin/false via-env", "verify-client-cert optional")
    with netns() as ns:
        srv, log = _server(tmp_path, pki, ns, "tcp", "none", 21194, extra)
        with srv:
            wait_for(lambda: log_has(log, "Initialization Sequence Completed"), what="openvpn server")
            obs = run_probe_in(ns, "openvpn", "openvpn://127.0.0.1:21194?proto=tcp", config=str(client), timeout=10.0)
            assert op(obs, "tls_handshake")["failure"] is None
            kx = op(obs, "openvpn_key_exchange")
            assert kx["failure"] == "unknown_failure: openvpn_control: AUTH_FAILED", (kx, log.read_text()[-1500:])
            assert kx["username_sent"] is True
            obs = run_probe_in(ns, "openvpn", "openvpn://127.0.0.1:21194?proto=tcp", config=str(nocreds), timeout=10.0)
            kx = op(obs, "openvpn_key_exchange")
            assert kx["failure"] in ("eof_error", "connection_reset") and kx["username_sent"] is False, kx

