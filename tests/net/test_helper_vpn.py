"""The control helper's VPN probes on loopback: round trips, allow-listed options, caps.

A loopback helper (``--allow 127.0.0.0/8`` where a test needs it) runs the
VPN probes against loopback servers: a scripted OpenVPN responder, a silent
WireGuard port, a real sshd, an echo listener for fet. Refusals are checked to
send nothing to the target.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import pytest
from helper_support import HelperThread, LoopbackListener
from vpn_support import running_sshd

from censorscope.measure.campaign import Campaign
from censorscope.measure.control import ControlClient, make_control_provider
from censorscope.measure.helper import HelperConfig
from censorscope.measure.helper_vpn import FET_BUDGET_SHARE, VPN_PROBES, fet_worst_case
from censorscope.measure.runs import execute
from censorscope.measure.store import iter_measurements
from censorscope.probes import fet, openvpn, ssh, wireguard
from censorscope.probes.wire import openvpn as ovpn_wire

pytestmark = pytest.mark.net

LOOP = dict(allow=["127.0.0.0/8"], rate=1000.0, burst=1000)
PUBKEY = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="


class UdpServer:
    """A loopback UDP socket that records datagrams and answers with ``reply(data)`` (None: silent)."""

    def __init__(self, reply=None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.reply = reply
        self.sock.settimeout(0.1)  # the loop checks ``stop`` (closing a socket does not wake recvfrom)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            answer = self.reply(data) if self.reply else None
            if answer:
                self.sock.sendto(answer, peer)

    def __enter__(self) -> UdpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def server_reset(data: bytes) -> bytes | None:
    """What an OpenVPN server (no tls-auth) answers to a client hard reset."""
    p = ovpn_wire.parse(data)
    if p.opcode != ovpn_wire.HARD_RESET_CLIENT_V2:
        return None
    return ovpn_wire.build(ovpn_wire.Packet(ovpn_wire.HARD_RESET_SERVER_V2, 0, b"S" * 8, acks=[p.packet_id or 0],
                                            remote_session_id=p.session_id, packet_id=0))


def control(url: str, probe: str, target: str, options: object) -> dict:
    async def go():
        async with ControlClient(url) as c:
            return await c.control_for(probe, target, options)
    return asyncio.run(go())


def post(url: str, body: dict) -> httpx.Response:
    with httpx.Client(timeout=90, trust_env=False) as c:
        return c.post(url + "/v1/measure", json=body)


def only(observations: list[dict], operation: str) -> dict:
    found = [o for o in observations if o["operation"] == operation]
    assert len(found) == 1, observations
    return found[0]


def test_health_offers_the_vpn_probes():
    with HelperThread(HelperConfig(**LOOP)) as h, httpx.Client(trust_env=False) as c:
        offered = c.get(h.url + "/v1/health").json()["probes"]
    assert set(VPN_PROBES) <= set(offered)
    assert {"openvpn", "wireguard", "fet", "ssh", "tor", "socks"} <= set(offered)


def test_openvpn_control_round_trip():
    with UdpServer(server_reset) as srv, HelperThread(HelperConfig(**LOOP)) as h:
        got = control(h.url, "openvpn", f"openvpn://127.0.0.1:{srv.port}?proto=udp", openvpn.Options(timeout=5.0))
    assert got["failure"] is None and got["probe"] == "openvpn", got
    hs = only(got["observations"], "openvpn_handshake")
    assert hs["failure"] is None, hs
    assert hs["server_opcode"] == "P_CONTROL_HARD_RESET_SERVER_V2" and hs["server_session_id"] == (b"S" * 8).hex()
    assert got["options"]["proto"] is None and got["options"]["config"] is None
    first = ovpn_wire.parse(srv.received[0])
    assert first.opcode == ovpn_wire.HARD_RESET_CLIENT_V2


def test_wireguard_control_round_trip():
    """With the server's public key only (a private key is never sent) the control says what it can:
    a WireGuard server stays silent to unknown peers, so no response is expected."""
    with UdpServer() as srv, HelperThread(HelperConfig(**LOOP)) as h:
        got = control(h.url, "wireguard", f"wireguard://127.0.0.1:{srv.port}?pubkey={PUBKEY}",
                      wireguard.Options(timeout=1.0))
        assert got["failure"] is None, got
        hs = only(got["observations"], "wireguard_handshake")
        assert hs["failure"] is None and hs["mode"] == "unknown_peer" and hs["response_expected"] is False
        assert hs["outcome"] == "no_response_expected"
        assert len(srv.received) == 1 and len(srv.received[0]) == 148  # one handshake initiation
        # a vantage that used its client private key cannot get a comparable control: no request at all
        before = len(srv.received)
        priv = wireguard.Options(private_key=PUBKEY)
        refused = control(h.url, "wireguard", f"wireguard://127.0.0.1:{srv.port}?pubkey={PUBKEY}", priv)
        assert refused["failure"].startswith("helper_not_comparable: option(s) private_key")
        assert refused["observations"] == [] and len(srv.received) == before


def test_ssh_control_round_trip(tmp_path):
    with running_sshd(tmp_path) as address, HelperThread(HelperConfig(**LOOP)) as h:
        got = control(h.url, "ssh", f"ssh://{address}", ssh.Options(timeout=10.0))
    assert got["failure"] is None, got
    hs = only(got["observations"], "ssh_handshake")
    assert hs["failure"] is None and hs["software_version"].startswith("OpenSSH_"), hs


def test_fet_control_round_trip_is_capped():
    """The vantage's default fet plan (16 attempts) is cut to what fits the helper's worst-case budget."""
    with LoopbackListener(echo=True) as srv, HelperThread(HelperConfig(**LOOP)) as h:
        got = control(h.url, "fet", f"fet://127.0.0.1:{srv.port}", fet.Options(interval=0.0, followup_delay=0.1))
        accepted = srv.accepted
    assert got["failure"] is None, got
    opts = got["options"]
    assert opts["timeout"] == 3.0 and opts["read_timeout"] == 2.0 and opts["interval"] == 0.05
    assert {"timeout", "read_timeout", "interval", "attempts"} <= set(got["clamped_options"])
    plan = only(got["observations"], "fet_plan")
    assert plan["attempts_needed"] == 16 and 1 <= plan["attempts"] < 16
    assert fet_worst_case(fet.Options(**opts), plan["attempts"]) <= FET_BUDGET_SHARE * 60.0
    attempts = [o for o in got["observations"] if o["operation"] == "fet_attempt"]
    assert len(attempts) == 2 * plan["attempts"] + 2 == accepted
    assert all(a["outcome"] == "data" for a in attempts)
    assert {a["kind"] for a in attempts} == {"fet", "control", "followup"}


def test_fet_repetitions_are_capped_whatever_the_request_says():
    with LoopbackListener(echo=True) as srv, HelperThread(HelperConfig(**LOOP)) as h:
        r = post(h.url, {"probe": "fet", "target": f"fet://127.0.0.1:{srv.port}", "options": {
            "attempts": 10_000, "followups": 1000, "followup_delay": 3600.0, "payload_length": 1_000_000,
            "timeout": 0.5, "read_timeout": 0.5, "interval": 0.0}})
        accepted = srv.accepted
    assert r.status_code == 200, r.text
    body = r.json()
    opts = body["options"]
    assert opts["attempts"] <= 20 and opts["followups"] == 4 and opts["followup_delay"] == 10.0
    assert opts["payload_length"] == 1024
    assert {"attempts", "followups", "followup_delay", "payload_length"} <= set(body["clamped_options"])
    # at most 2 x 20 attempts + 4 follow-ups, however many were asked for
    assert accepted == 2 * opts["attempts"] + 4 <= 44
    sizes = {o["payload_length"] for o in body["observations"] if o["operation"] == "fet_attempt"}
    assert sizes == {1024}


def test_timeouts_are_capped():
    with UdpServer() as srv, HelperThread(HelperConfig(**LOOP)) as h:
        r = post(h.url, {"probe": "openvpn", "target": f"127.0.0.1:{srv.port}",
                         "options": {"timeout": 0.5, "hold": 600.0}})
        r2 = post(h.url, {"probe": "tor", "target": "127.0.0.1:9", "options": {"timeout": 9999.0}})
    assert r.status_code == 200 and r.json()["options"]["hold"] == 2.0 and r.json()["clamped_options"] == ["hold"]
    assert r2.status_code == 200 and r2.json()["options"]["timeout"] == 10.0


@pytest.mark.parametrize(("probe", "target", "options", "says"), [
    ("openvpn", "openvpn://127.0.0.1:{port}", {"config": "/etc/shadow"}, "option(s) config not accepted"),
    ("openvpn", "openvpn://127.0.0.1:{port}?config=/etc/shadow", {}, "target parameter 'config' not accepted"),
    ("wireguard", "127.0.0.1:{port}", {"private_key": PUBKEY}, "option(s) private_key not accepted"),
    ("wireguard", "127.0.0.1:{port}", {"config": "/root/wg0.conf"}, "option(s) config not accepted"),
    ("tor", "127.0.0.1:{port}", {"obfs4proxy": "/bin/sh"}, "option(s) obfs4proxy not accepted"),
    ("tor", "127.0.0.1:{port}", {"bridge": "obfs4 127.0.0.1:1 " + "A" * 40 + " cert=x iat-mode=0"},
     "option(s) bridge not accepted"),
    ("fet", "fet://127.0.0.1:{port}", {"config": "/etc/shadowsocks-libev/config.json"}, "option(s) config"),
    ("fet", "fet://127.0.0.1:{port}", {"shadowsocks_only": True}, "option(s) shadowsocks_only"),
    ("socks", "socks://127.0.0.1:{port}?dest=127.0.0.1:80", {"password": "pw"}, "option(s) password"),
    ("ikev2", "127.0.0.1:{port}", {"config": "x.toml"}, "option(s) config"),
    ("ssh", "ssh://127.0.0.1:{port}?config=/root/.ssh/config", {}, "target parameter 'config'"),
    ("openvpn", "127.0.0.1:{port}", {"proto": "sctp"}, "option 'proto' must be udp or tcp"),
    ("openvpn", "127.0.0.1:{port}", {"timeout": -1}, "option 'timeout' must be at least 0"),
    ("wireguard", "wireguard://127.0.0.1:{port}?pubkey=../../key", {}, "must be a base64 WireGuard public key"),
    ("tor", "127.0.0.1:{port}", {"fingerprint": "not-hex"}, "40 hex digits"),
    ("ikev2", "127.0.0.1:{port}", {"group": 2}, "one of 14, 19, 31"),
    ("fet", "fet://127.0.0.1:{port}", {"probability": 0.0}, "option 'probability' must be at least 0.01"),
])
def test_unsafe_or_malformed_requests_are_refused_before_any_packet(probe, target, options, says):
    with UdpServer() as udp, LoopbackListener(echo=True) as tcp_srv, HelperThread(HelperConfig(**LOOP)) as h:
        port = tcp_srv.port if probe in ("fet", "socks", "ssh", "tor") else udp.port
        r = post(h.url, {"probe": probe, "target": target.format(port=port), "options": options})
        sent = len(udp.received) + tcp_srv.accepted
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    if says:
        assert says in r.json()["detail"], r.json()
    if "not accepted" in (says or ""):
        assert "allowed:" in r.json()["detail"] and "never takes file paths" in r.json()["detail"]
    assert sent == 0


def test_private_targets_still_need_allow():
    """Without --allow, loopback VPN targets (and a proxy's dest) are refused: 403, nothing sent."""
    with UdpServer(server_reset) as srv, LoopbackListener(echo=True) as proxy:
        with HelperThread(HelperConfig(rate=1000.0, burst=1000)) as h:
            r = post(h.url, {"probe": "openvpn", "target": f"openvpn://127.0.0.1:{srv.port}?proto=udp"})
        assert r.status_code == 403 and "loopback" in r.json()["detail"]
        with HelperThread(HelperConfig(allow=["127.0.0.1/32"], rate=1000.0, burst=1000)) as h:
            r2 = post(h.url, {"probe": "socks", "target": f"socks://127.0.0.1:{proxy.port}",
                              "options": {"dest": "127.0.0.2:80"}})
            r3 = post(h.url, {"probe": "httpconnect", "target": f"httpconnect://127.0.0.1:{proxy.port}?dest=127.0.0.3:80"})
        assert r2.status_code == 403 and "127.0.0.2" in r2.json()["detail"]
        assert r3.status_code == 403 and "127.0.0.3" in r3.json()["detail"]
        assert srv.received == [] and proxy.accepted == 0


def test_client_refuses_not_comparable_controls_without_a_request():
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda req: calls.append(req) or httpx.Response(500))
    c = ControlClient("http://127.0.0.1:9", transport=transport)
    got = asyncio.run(c.control_for("openvpn", "openvpn://198.51.100.1:1194", openvpn.Options(config="/x.ovpn")))
    assert got == {"failure": "helper_not_comparable: option(s) config (a helper never takes file paths, "
                              "programs or secrets)", "observations": []}
    got = asyncio.run(c.control_for("ssh", "ssh://198.51.100.1:22?config=/x.toml", None))
    assert got["failure"].startswith("helper_not_comparable: target parameter(s) config")
    assert calls == []


def test_campaign_run_gets_controls_for_vpn_targets(tmp_path):
    """``censorscope run --control``: the runner asks the helper for the VPN targets' controls too."""
    with LoopbackListener(echo=True) as echo, UdpServer(server_reset) as ovpn, HelperThread(HelperConfig(**LOOP)) as h:
        urls = [f"fet://127.0.0.1:{echo.port}", f"openvpn://127.0.0.1:{ovpn.port}?proto=udp"]
        c = Campaign(name="vpnctl", urls=urls, probes=["fet", "openvpn"], out=str(tmp_path / "o"), control_url=h.url,
                     probe_options={"fet": {"attempts": 2, "interval": 0.0, "followup_delay": 0.1}})
        summary = asyncio.run(execute(c, control_factory=make_control_provider))
        measurements = list(iter_measurements(summary.path))
    by_probe = {m["probe"]: m for m in measurements}
    assert set(by_probe) == {"fet", "openvpn"}, [(m["probe"], m["input"]) for m in measurements]
    for m in measurements:
        ctl = m["control"]
        assert ctl is not None and ctl["failure"] is None, ctl
        assert ctl["probe"] == m["probe"] and ctl["target"] == m["input"]
    assert only(by_probe["openvpn"]["control"]["observations"], "openvpn_handshake")["failure"] is None
    plan = only(by_probe["fet"]["control"]["observations"], "fet_plan")
    assert plan["attempts"] == 2
