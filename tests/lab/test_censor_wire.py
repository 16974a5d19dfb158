"""The censor on the wire, in the lab (tests/lab/conftest.py's shared ``lab_session``).

Each test switches the lab to a scenario made of the baseline sites plus the
censor behaviours under test (``use_scenario``: the running censor reloads on
SIGHUP), measures from the client namespace with plain sockets, and learns what
the server experienced from small test servers (``test_censor_servers.py``)
that run in the server namespace on addresses of their own. No test asserts an
absolute time: timing checks are lower bounds or ratios.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

import dns.message
import pytest
from cryptography import x509

from censorscope.lab import addressing as A
from censorscope.lab import scenario as scenario_mod
from censorscope.lab.censor.ca import CA_NAME

pytestmark = pytest.mark.lab

HERE = Path(__file__).parent
IP_RECVTTL, IP_TTL = 12, 2  # linux/in.h (not exported by the socket module)
# Addresses of the test servers and of blocked-but-hosted destinations: on the server's
# eth0, unused by the address plan and the shipped scenarios.
SERVER, SERVER6 = "203.0.113.241", "2001:db8:3::241"
BLACKHOLED, REJECTED = "203.0.113.242", "203.0.113.243"
SERVERS_KEY = "censor-test-servers"


def _read(p: Path) -> str:
    return p.read_text() if p.exists() else ""


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(what)


@dataclasses.dataclass
class Wire:
    """The shared lab plus this module's test servers."""

    lab: object
    events: Path

    def client(self, fn, *args):
        return self.lab.topo.call_in("client", fn, *args)

    def ns_run(self, role: str, *argv: str) -> str:
        return self.lab.topo.run(role, list(argv), check=False).stdout

    def server_events(self, sport: int) -> list[dict]:
        return [e for e in (json.loads(x) for x in _read(self.events).splitlines() if x) if e.get("sport") == sport]


@pytest.fixture(scope="module")
def wire(lab_session, tmp_path_factory):
    lab = lab_session
    d = tmp_path_factory.mktemp("censor-wire")
    addrs = [f"{a}/32" for a in (SERVER, BLACKHOLED, REJECTED)] + [f"{SERVER6}/128"]
    for a in addrs:
        lab.topo.run("server", ["ip", "addr", "add", a, "dev", "eth0", *(["nodad"] if ":" in a else [])])
    try:
        lab.topo.spawn(SERVERS_KEY, "server", [sys.executable, str(HERE / "test_censor_servers.py"), str(d),
                                               SERVER, SERVER6], log=d / "out")
        _wait(lambda: (d / "up").exists(), 30, "test servers did not start: " + _read(d / "out"))
        yield Wire(lab, d / "events.jsonl")
    finally:
        lab.topo.stop(SERVERS_KEY)
        for a in addrs:
            lab.topo.run("server", ["ip", "addr", "del", a, "dev", "eth0"], check=False)


class CensorView:
    """The lab's censor as configured by one test: its action log from this test on."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.log = lab.censor_dir / "actions.jsonl"
        self.offset = self.log.stat().st_size if self.log.exists() else 0

    @property
    def ca_file(self) -> Path:
        return self.lab.censor_dir / "state" / "censor-ca" / "ca.pem"

    def records(self, action: str | None = None) -> list[dict]:
        with self.log.open("rb") as f:
            f.seek(self.offset)
            recs = [json.loads(x) for x in f.read().decode().splitlines() if x.strip()]
        return [r for r in recs if action is None or r["action"] == action]


@pytest.fixture
def censor(wire, use_scenario):
    views: list[CensorView] = []
    base = scenario_mod.load("baseline")

    def start(behaviours: list[dict]) -> CensorView:
        view = CensorView(wire.lab)
        sc = dataclasses.replace(base, name="censor-wire", censor=tuple(behaviours), truth=())
        use_scenario(sc, fresh=True)  # fresh: clears censor state (residual windows) between tests
        views.append(view)
        return view

    yield start
    for v in views:
        errors = v.records("error")
        assert not errors, f"censor logged errors: {errors}"


# --- client-side operations (run inside the client namespace) -------------------------------


def dns_exchange(server: str, name: str, hold: float = 1.0, qtype: str = "A") -> list[tuple[float, int, list[str]]]:
    """Send one query and keep every response for ``hold`` s: (arrival, IP TTL (v4 only), addresses)."""
    s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    if ":" not in server:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    q = dns.message.make_query(name, qtype)
    s.sendto(q.to_wire(), (server, 53))
    out = []
    deadline = time.monotonic() + hold
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, anc, _, _ = s.recvmsg(4096, 64)
        except TimeoutError:
            break
        ttl = next((int.from_bytes(d[:4], sys.byteorder) for lvl, typ, d in anc if typ == IP_TTL), -1)
        r = dns.message.from_wire(data)
        out.append((time.monotonic(), ttl, [rd.address for rr in r.answer for rd in rr]))
    s.close()
    return out


def http_request(addr: str, port: int, path: str = "/", host: str = "www.example.org", timeout: float = 5.0):
    """(local port, outcome, bytes): outcome is "ok", "reset", "timeout" or an errno name."""
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    data = b""
    try:
        s.connect((addr, port))
        sport = s.getsockname()[1]
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while chunk := s.recv(65536):
            data += chunk
        return sport, "ok", data
    except ConnectionResetError:
        return s.getsockname()[1], "reset", data
    except TimeoutError:
        return s.getsockname()[1], "timeout", data
    except OSError as e:
        return s.getsockname()[1], os.strerror(e.errno or 0), data
    finally:
        s.close()


def tls_fetch(addr: str, sni: str, path: str = "/", timeout: float = 30.0):
    """(outcome, peer certificate (DER), body bytes, seconds spent reading the body)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((addr, 443), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=sni)
        cert = s.getpeercert(binary_form=True)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\n\r\n".encode())
        t0, body = time.monotonic(), b""
        while chunk := s.recv(65536):
            body += chunk
        return "ok", cert, body, time.monotonic() - t0
    except ConnectionResetError:
        return "reset", None, b"", 0.0
    finally:
        raw.close()


# --- tests ----------------------------------------------------------------------------------


def test_forged_dns_answer_arrives_before_the_real_one(wire, censor):
    c = censor([{"behaviour": "dns_injection", "names": ["blocked.example"],
                 "injectors": [{"ttl": 37}, {"ttl": "copy"}]}])
    got = wire.client(lambda: dns_exchange(SERVER, "www.blocked.example"))
    assert len(got) == 3, got
    forged, real = got[:2], got[2]
    assert all(set(a) <= set(A.FORGED_POOL_V4) and a for _, _, a in forged)
    assert real[2] == ["203.0.113.80"]  # the real answer still arrives, after the forged ones
    # injector fingerprints; "copy" = the TTL the query had at the censor (after its forwarding decrement)
    assert forged[0][1] == 37 and forged[1][1] == 63
    assert real[1] < 63  # the real server is further away than the censor
    (rec,) = c.records("dns_inject")
    assert rec["flow"]["dst"] == SERVER and rec["qname"] == "www.blocked.example"
    # an unlisted name gets only the real answer
    other = wire.client(lambda: dns_exchange(SERVER, "fine.example"))
    assert [a for _, _, a in other] == [["203.0.113.80"]]


def test_query_to_address_without_dns_server_is_answered_by_injector(wire, censor):
    censor([{"behaviour": "dns_injection", "names": ["blocked.example"]}])
    got = wire.client(lambda: dns_exchange(A.NO_DNS_V4, "blocked.example"))
    assert len(got) == 1 and got[0][2][0] in A.FORGED_POOL_V4
    assert wire.client(lambda: dns_exchange(A.NO_DNS_V4, "fine.example", hold=0.5)) == []


@contextlib.contextmanager
def capture(lab, role: str, directory: Path, bpf: str):
    """tcpdump in namespace ``role`` while the block runs; yields a list filled with the packets afterwards."""
    from scapy.utils import rdpcap

    pcap, key = directory / f"{role}.pcap", f"censor-test-tcpdump-{role}"
    packets: list = []
    lab.topo.spawn(key, role, ["tcpdump", "-i", "any", "-n", "-U", "--immediate-mode", "-w", str(pcap), bpf])
    try:
        _wait(lambda: pcap.exists(), 10, "tcpdump did not start")
        time.sleep(0.5)
        yield packets
        time.sleep(0.5)
    finally:
        lab.topo.stop(key)
    packets.extend(rdpcap(str(pcap)))


def test_rst_injection_resets_both_ends_and_request_never_arrives(wire, censor, tmp_path):
    from scapy.layers.inet import IP, TCP

    c = censor([{"behaviour": "rst_injection", "http_keywords": ["falun"], "ttl": 99}])
    rst = f"host {SERVER} and tcp[tcpflags] & tcp-rst != 0"
    with capture(wire.lab, "client", tmp_path, rst) as at_client, capture(wire.lab, "server", tmp_path, rst) as at_srv:
        sport, outcome, _ = wire.client(lambda: http_request(SERVER, 80, "/%66alun"))
    assert outcome == "reset"
    (rec,) = c.records("rst")
    # on the wire: each end got one RST with the injector's TTL (99 at the client, one hop less at the
    # server, behind the transit router) and the exact sequence number it accepts
    (to_client,) = [p for p in at_client if p[IP].src == SERVER and p[TCP].dport == sport]
    (to_server,) = [p for p in at_srv if p[IP].dst == SERVER and p[TCP].sport == sport]
    assert to_client[IP].ttl == 99 and to_client[TCP].seq == rec["client_rst_seq"]
    assert to_server[IP].ttl == 98 and to_server[TCP].seq == rec["server_rst_seq"]
    _wait(lambda: wire.server_events(sport), 10, "server saw nothing of the connection")
    (ev,) = wire.server_events(sport)
    assert ev["event"] == "reset" and ev["data"] == ""  # the server was reset and never got the request
    assert rec["flow"]["sport"] == sport and rec["value"] == "/falun"
    sport, outcome, data = wire.client(lambda: http_request(SERVER, 80, "/fine"))
    assert outcome == "ok" and data.endswith(b"real content\n")


def test_ipv6_dns_injection_and_rst(wire, censor):
    censor([{"behaviour": "dns_injection", "names": ["blocked.example"]},
            {"behaviour": "rst_injection", "http_keywords": ["falun"]}])
    got = wire.client(lambda: dns_exchange(SERVER6, "blocked.example", hold=0.5, qtype="AAAA"))
    assert len(got) == 1 and got[0][2][0] in A.FORGED_POOL_V6
    sport, outcome, _ = wire.client(lambda: http_request(SERVER6, 80, "/falun"))
    assert outcome == "reset"
    _wait(lambda: wire.server_events(sport), 10, "server saw nothing")
    assert wire.server_events(sport)[0]["event"] == "reset"
    assert wire.client(lambda: http_request(SERVER6, 80, "/fine"))[1] == "ok"


def test_rst_injection_on_sni(wire, censor):
    censor([{"behaviour": "rst_injection", "sni": ["blocked.example"]}])
    assert wire.client(lambda: tls_fetch(SERVER, "www.blocked.example"))[0] == "reset"
    assert wire.client(lambda: tls_fetch(SERVER, "fine.example"))[0] == "ok"


def test_residual_window_blocks_the_triple_then_expires(wire, censor):
    duration = 5.0
    c = censor([{"behaviour": "rst_injection", "http_keywords": ["falun"]},
                {"behaviour": "residual", "duration": duration}])
    assert wire.client(lambda: http_request(SERVER, 80, "/falun"))[1] == "reset"
    t_trigger = time.monotonic()
    assert wire.client(lambda: http_request(SERVER, 80, "/fine"))[1] == "reset"
    assert wire.client(lambda: http_request(SERVER, 8080, "/fine"))[1] == "ok"  # other port
    inside = time.monotonic() - t_trigger
    assert inside < duration, "machine too slow to observe the window; raise duration"
    time.sleep(duration - inside + 0.5)
    assert wire.client(lambda: http_request(SERVER, 80, "/fine"))[1] == "ok"
    assert [r["action"] for r in c.records() if r["behaviour"] == "residual"] == [
        "residual_start", "residual_rst", "residual_expired"]


def test_blockpage_reaches_client_and_server_is_reset(wire, censor):
    c = censor([{"behaviour": "blockpage_injection", "http_hosts": ["blocked.example"],
                 "status": 451, "reason": "Unavailable For Legal Reasons", "body": "BLOCKED"}])
    sport, outcome, data = wire.client(lambda: http_request(SERVER, 80, host="blocked.example"))
    assert data.startswith(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n") and data.endswith(b"\r\n\r\nBLOCKED")
    assert outcome in ("ok", "reset")  # EOF after the page; a late RST from the reset server is possible
    _wait(lambda: wire.server_events(sport), 10, "server saw nothing")
    assert wire.server_events(sport)[0]["event"] == "reset"
    assert c.records("blockpage")[0]["flow"]["sport"] == sport


def test_ip_blackhole_and_icmp_reject(wire, censor):
    censor([{"behaviour": "ip_blackhole", "addresses": [BLACKHOLED]},
            {"behaviour": "icmp_reject", "addresses": [REJECTED], "kind": "host-unreachable"}])
    assert wire.client(lambda: http_request(BLACKHOLED, 80, timeout=2))[1] == "timeout"
    assert wire.client(lambda: http_request(REJECTED, 80))[1] == os.strerror(113)  # EHOSTUNREACH
    assert wire.client(lambda: http_request(SERVER, 80))[1] == "ok"


def test_tls_interception_presents_the_censor_certificate(wire, censor):
    c = censor([{"behaviour": "tls_interception", "sni": ["intercepted.example"], "addresses": [SERVER]}])
    ca = x509.load_pem_x509_certificate(c.ca_file.read_bytes())
    outcome, der, body, _ = wire.client(lambda: tls_fetch(SERVER, "www.intercepted.example"))
    cert = x509.load_der_x509_certificate(der)
    assert outcome == "ok" and body.endswith(b"real content\n")  # content relayed from the real server
    assert cert.issuer == ca.subject and CA_NAME in cert.issuer.rfc4514_string()
    cert.verify_directly_issued_by(ca)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["www.intercepted.example"]
    outcome, der, body, _ = wire.client(lambda: tls_fetch(SERVER, "fine.example"))
    real = x509.load_der_x509_certificate(der)
    assert outcome == "ok" and "real server" in real.subject.rfc4514_string()
    actions = [r["action"] for r in c.records() if r["behaviour"] == "tls_interception"]
    assert actions == ["ca_ready", "tls_intercept", "tls_pass"]


def test_throttled_flow_measures_near_its_rate_and_unthrottled_does_not(wire, censor):
    rate_kbit = 256
    censor([{"behaviour": "throttle", "sni": ["slow.example"], "rate": f"{rate_kbit}kbit"}])
    size = 96 * 1024  # ~3 s at 256 kbit/s
    outcome, _, body, secs = wire.client(lambda: tls_fetch(SERVER, "slow.example", f"/bytes/{size}"))
    assert outcome == "ok" and len(body) > size
    slow_kbit = len(body) * 8 / 1000 / secs
    outcome, _, body, secs = wire.client(lambda: tls_fetch(SERVER, "fast.example", f"/bytes/{size * 20}"))
    fast_kbit = len(body) * 8 / 1000 / secs
    assert 0.5 * rate_kbit < slow_kbit < 1.3 * rate_kbit, slow_kbit
    # unthrottled: limited only by CPU (Python TLS at both ends); far above the class even on a loaded machine
    assert fast_kbit > 4 * rate_kbit, fast_kbit


def test_latency_adds_delay_each_way(wire, censor):
    def connect_time() -> float:
        t0 = time.monotonic()
        socket.create_connection((SERVER, 80), timeout=10).close()
        return time.monotonic() - t0

    censor([{"behaviour": "latency", "delay_ms": 100, "addresses": [SERVER]}])
    assert wire.client(connect_time) >= 0.2  # SYN and SYN/ACK each held 100 ms


def test_no_packet_leaves_the_lab_ranges(wire, censor, tmp_path):
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    with capture(wire.lab, "censor", tmp_path, "ip or ip6") as packets:
        censor([
            {"behaviour": "dns_injection", "names": ["blocked.example"], "injectors": [{}, {"ttl": "copy"}]},
            {"behaviour": "rst_injection", "http_keywords": ["falun"]},
            {"behaviour": "icmp_reject", "addresses": [REJECTED]},
            {"behaviour": "tls_interception", "sni": ["intercepted.example"], "addresses": [SERVER]},
        ])
        outcomes = [
            len(wire.client(lambda: dns_exchange(A.NO_DNS_V4, "blocked.example", hold=0.3))),
            wire.client(lambda: http_request(SERVER, 80, "/falun"))[1],
            wire.client(lambda: http_request(REJECTED, 80))[1],
            wire.client(lambda: tls_fetch(SERVER, "intercepted.example"))[0],
        ]
    assert outcomes == [2, "reset", os.strerror(113), "ok"]
    routable = 0
    for p in packets:
        ip = p[IP] if IP in p else p[IPv6]
        addrs = [ipaddress.ip_address(a) for a in (ip.src, ip.dst)]
        if any(a.is_link_local or a.is_multicast for a in addrs):
            continue  # IPv6 neighbour discovery: link-scoped, never routed
        routable += 1
        assert A.in_lab_ranges(ip.src) and A.in_lab_ranges(ip.dst), p.summary()
    assert routable > 20, [p.summary() for p in packets]


def test_lifecycle_reload_and_clean_exit(fresh_lab_name):
    """A lab of its own: this test stops the censor, which the shared lab must keep."""
    from censorscope.lab.lab import Lab

    base = scenario_mod.load("baseline")
    lab = Lab(fresh_lab_name)
    try:
        lab.up(dataclasses.replace(base, censor=({"behaviour": "ip_blackhole", "addresses": [A.WEB_V4]},)))
        proc, conf = lab.topo.procs["censor"], lab.censor_dir / "censor.json"
        ready = Path(str(conf) + ".ready")
        log = lab.censor_dir / "actions.jsonl"
        assert "CENSORSCOPE" in lab.topo.run("censor", ["iptables", "-S"]).stdout
        assert lab.topo.call_in("client", lambda: http_request(A.WEB_V4, 80, timeout=1))[1] == "timeout"
        # fast switch: same process, new rules and behaviours
        lab.switch(dataclasses.replace(base, censor=({"behaviour": "throttle", "sni": ["slow.example"]},)))
        assert lab.topo.procs["censor"] is proc and json.loads(ready.read_text())["generation"] == 2
        assert lab.topo.call_in("client", lambda: http_request(A.WEB_V4, 80))[1] == "ok"
        assert "htb" in lab.topo.run("censor", ["tc", "qdisc", "show", "dev", "cli0"]).stdout
        # a broken config on reload keeps the running one
        conf.write_text('{"behaviours": [{"behaviour": "nope"}]}')
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: "reload_failed" in _read(log), 30, "reload failure not logged")
        assert json.loads(ready.read_text())["generation"] == 2 and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for tool, table in (("iptables", "filter"), ("ip6tables", "nat"), ("iptables", "mangle")):
            assert "CENSORSCOPE" not in lab.topo.run("censor", [tool, "-t", table, "-S"]).stdout
        assert "htb" not in lab.topo.run("censor", ["tc", "qdisc", "show", "dev", "cli0"]).stdout
        assert not ready.exists() and json.loads(log.read_text().splitlines()[-1])["action"] == "stopped"
    finally:
        lab.down()
