"""The censor on the wire: a client, the censor and a server in network namespaces.

Every test starts its own censor process (``python -m censorscope.lab.censor``)
in the censor namespace and measures from the client namespace with plain
sockets; what the server experienced comes from the test servers' event log.
No test asserts an absolute time: timing checks are lower bounds or ratios.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import pytest
from cryptography import x509
from test_censor_netns import Trio, run_in_netns

from censorscope.lab import addressing as A
from censorscope.lab.censor.ca import CA_NAME

pytestmark = pytest.mark.lab

HERE = Path(__file__).parent
SERVER = A.SERVER_V4
IP_RECVTTL, IP_TTL = 12, 2  # linux/in.h (not exported by the socket module)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    t = Trio()
    try:
        t.up()
        d = tmp_path_factory.mktemp("servers")
        t.spawn(t.server, sys.executable, str(HERE / "test_censor_servers.py"), str(d),
                stdout=subprocess.DEVNULL, stderr=(d / "err").open("w"))
        _wait(lambda: (d / "up").exists(), 30, "test servers did not start: " + _read(d / "err"))
        t.events = d / "events.jsonl"  # type: ignore[attr-defined]
        yield t
    finally:
        t.down()


def _read(p: Path) -> str:
    return p.read_text() if p.exists() else ""


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(what)


class Censor:
    """One censor process with its config, ready file and action log."""

    def __init__(self, trio: Trio, directory: Path, config: dict) -> None:
        self.trio, self.dir = trio, directory
        self.conf = directory / "censor.json"
        self.log = directory / "actions.jsonl"
        self.ready = Path(str(self.conf) + ".ready")
        self.write(config)
        self.proc = trio.spawn(trio.censor, sys.executable, "-m", "censorscope.lab.censor", "--config",
                               str(self.conf), stdout=subprocess.DEVNULL, stderr=(directory / "err").open("w"))
        self.wait_generation(1)

    def write(self, config: dict) -> None:
        self.conf.write_text(json.dumps({"log": str(self.log), "state_dir": str(self.dir / "state"), **config}))

    def generation(self) -> int:
        try:
            return json.loads(self.ready.read_text())["generation"]
        except (OSError, ValueError):
            return 0

    def wait_generation(self, n: int) -> None:
        def ok() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"censor exited with {self.proc.returncode}: {_read(self.dir / 'err')}")
            return self.generation() >= n
        _wait(ok, 60, f"censor never reached generation {n}")

    def records(self, action: str | None = None) -> list[dict]:
        recs = [json.loads(line) for line in _read(self.log).splitlines() if line.strip()]
        return [r for r in recs if action is None or r["action"] == action]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def censor(trio, tmp_path):
    running: list[Censor] = []

    def start(config: dict) -> Censor:
        c = Censor(trio, tmp_path, config)
        running.append(c)
        return c

    yield start
    for c in running:
        if c.proc.poll() is None:
            c.stop()
        errors = c.records("error")
        assert not errors, f"censor logged errors: {errors}"


def server_events(trio, sport: int) -> list[dict]:
    return [e for e in (json.loads(x) for x in _read(trio.events).splitlines() if x) if e.get("sport") == sport]


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
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
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


def test_forged_dns_answer_arrives_before_the_real_one(trio, censor):
    c = censor({"behaviours": [{"behaviour": "dns_injection", "names": ["blocked.example"],
                                "injectors": [{"ttl": 37}, {"ttl": "copy"}]}]})
    got = run_in_netns(trio.client, lambda: dns_exchange(SERVER, "www.blocked.example"))
    assert len(got) == 3, got
    forged, real = got[:2], got[2]
    assert all(set(a) <= set(A.FORGED_POOL_V4) and a for _, _, a in forged)
    assert real[2] == ["203.0.113.80"]  # the real answer still arrives, after the forged ones
    # injector fingerprints; "copy" = the TTL the query had at the censor (after its forwarding decrement)
    assert forged[0][1] == 37 and forged[1][1] == 63
    assert real[1] == 63  # the real answer was routed through the censor
    (rec,) = c.records("dns_inject")
    assert rec["flow"]["dst"] == SERVER and rec["qname"] == "www.blocked.example"
    # an unlisted name gets only the real answer
    other = run_in_netns(trio.client, lambda: dns_exchange(SERVER, "fine.example"))
    assert [a for _, _, a in other] == [["203.0.113.80"]]


def test_query_to_address_without_dns_server_is_answered_by_injector(trio, censor):
    censor({"behaviours": [{"behaviour": "dns_injection", "names": ["blocked.example"]}]})
    got = run_in_netns(trio.client, lambda: dns_exchange(A.NO_DNS_V4, "blocked.example"))
    assert len(got) == 1 and got[0][2][0] in A.FORGED_POOL_V4
    assert run_in_netns(trio.client, lambda: dns_exchange(A.NO_DNS_V4, "fine.example", hold=0.5)) == []


def test_rst_injection_resets_both_ends_and_request_never_arrives(trio, censor):
    c = censor({"behaviours": [{"behaviour": "rst_injection", "http_keywords": ["falun"]}]})
    sport, outcome, _ = run_in_netns(trio.client, lambda: http_request(SERVER, 80, "/%66alun"))
    assert outcome == "reset"
    _wait(lambda: server_events(trio, sport), 10, "server saw nothing of the connection")
    (ev,) = server_events(trio, sport)
    assert ev["event"] == "reset" and ev["data"] == ""  # the server was reset and never got the request
    (rec,) = c.records("rst")
    assert rec["flow"]["sport"] == sport and rec["value"] == "/falun"
    sport, outcome, data = run_in_netns(trio.client, lambda: http_request(SERVER, 80, "/fine"))
    assert outcome == "ok" and data.endswith(b"real content\n")


def test_ipv6_dns_injection_and_rst(trio, censor):
    censor({"behaviours": [{"behaviour": "dns_injection", "names": ["blocked.example"]},
                           {"behaviour": "rst_injection", "http_keywords": ["falun"]}]})
    got = run_in_netns(trio.client, lambda: dns_exchange(A.SERVER_V6, "blocked.example", hold=0.5, qtype="AAAA"))
    assert len(got) == 1 and got[0][2][0] in A.FORGED_POOL_V6
    sport, outcome, _ = run_in_netns(trio.client, lambda: http_request(A.SERVER_V6, 80, "/falun"))
    assert outcome == "reset"
    _wait(lambda: server_events(trio, sport), 10, "server saw nothing")
    assert server_events(trio, sport)[0]["event"] == "reset"
    assert run_in_netns(trio.client, lambda: http_request(A.SERVER_V6, 80, "/fine"))[1] == "ok"


def test_rst_injection_on_sni(trio, censor):
    censor({"behaviours": [{"behaviour": "rst_injection", "sni": ["blocked.example"]}]})
    assert run_in_netns(trio.client, lambda: tls_fetch(SERVER, "www.blocked.example"))[0] == "reset"
    assert run_in_netns(trio.client, lambda: tls_fetch(SERVER, "fine.example"))[0] == "ok"


def test_residual_window_blocks_the_triple_then_expires(trio, censor):
    duration = 3.0
    c = censor({"behaviours": [{"behaviour": "rst_injection", "http_keywords": ["falun"]},
                               {"behaviour": "residual", "duration": duration}]})
    assert run_in_netns(trio.client, lambda: http_request(SERVER, 80, "/falun"))[1] == "reset"
    t_trigger = time.monotonic()
    assert run_in_netns(trio.client, lambda: http_request(SERVER, 80, "/fine"))[1] == "reset"
    assert run_in_netns(trio.client, lambda: http_request(SERVER, 8080, "/fine"))[1] == "ok"  # other port
    inside = time.monotonic() - t_trigger
    assert inside < duration, "machine too slow to observe the window; raise duration"
    time.sleep(duration - inside + 0.5)
    assert run_in_netns(trio.client, lambda: http_request(SERVER, 80, "/fine"))[1] == "ok"
    assert [r["action"] for r in c.records() if r["behaviour"] == "residual"] == [
        "residual_start", "residual_rst", "residual_expired"]


def test_blockpage_reaches_client_and_server_is_reset(trio, censor):
    c = censor({"behaviours": [{"behaviour": "blockpage_injection", "http_hosts": ["blocked.example"],
                                "status": 451, "reason": "Unavailable For Legal Reasons", "body": "BLOCKED"}]})
    sport, outcome, data = run_in_netns(trio.client, lambda: http_request(SERVER, 80, host="blocked.example"))
    assert data.startswith(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n") and data.endswith(b"\r\n\r\nBLOCKED")
    assert outcome in ("ok", "reset")  # EOF after the page; a late RST from the reset server is possible
    _wait(lambda: server_events(trio, sport), 10, "server saw nothing")
    assert server_events(trio, sport)[0]["event"] == "reset"
    assert c.records("blockpage")[0]["flow"]["sport"] == sport


def test_ip_blackhole_and_icmp_reject(trio, censor):
    censor({"behaviours": [{"behaviour": "ip_blackhole", "addresses": [A.WEB_V4]},
                           {"behaviour": "icmp_reject", "addresses": [A.RESOLVER_V4], "kind": "host-unreachable"}]})
    assert run_in_netns(trio.client, lambda: http_request(A.WEB_V4, 80, timeout=2))[1] == "timeout"
    assert run_in_netns(trio.client, lambda: http_request(A.RESOLVER_V4, 80))[1] == os.strerror(113)  # EHOSTUNREACH
    assert run_in_netns(trio.client, lambda: http_request(SERVER, 80))[1] == "ok"


def test_tls_interception_presents_the_censor_certificate(trio, censor):
    c = censor({"behaviours": [{"behaviour": "tls_interception", "sni": ["intercepted.example"],
                                "addresses": [SERVER]}]})
    ca = x509.load_pem_x509_certificate((c.dir / "state" / "censor-ca" / "ca.pem").read_bytes())
    outcome, der, body, _ = run_in_netns(trio.client, lambda: tls_fetch(SERVER, "www.intercepted.example"))
    cert = x509.load_der_x509_certificate(der)
    assert outcome == "ok" and body.endswith(b"real content\n")  # content relayed from the real server
    assert cert.issuer == ca.subject and CA_NAME in cert.issuer.rfc4514_string()
    cert.verify_directly_issued_by(ca)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["www.intercepted.example"]
    outcome, der, body, _ = run_in_netns(trio.client, lambda: tls_fetch(SERVER, "fine.example"))
    real = x509.load_der_x509_certificate(der)
    assert outcome == "ok" and "real server" in real.subject.rfc4514_string()
    actions = [r["action"] for r in c.records() if r["behaviour"] == "tls_interception"]
    assert actions == ["ca_ready", "tls_intercept", "tls_pass"]


def test_throttled_flow_measures_near_its_rate_and_unthrottled_does_not(trio, censor):
    rate_kbit = 256
    censor({"behaviours": [{"behaviour": "throttle", "sni": ["slow.example"], "rate": f"{rate_kbit}kbit"}]})
    size = 96 * 1024  # ~3 s at 256 kbit/s
    outcome, _, body, secs = run_in_netns(trio.client, lambda: tls_fetch(SERVER, "slow.example", f"/bytes/{size}"))
    assert outcome == "ok" and len(body) > size
    slow_kbit = len(body) * 8 / 1000 / secs
    outcome, _, body, secs = run_in_netns(
        trio.client, lambda: tls_fetch(SERVER, "fast.example", f"/bytes/{size * 20}"))
    fast_kbit = len(body) * 8 / 1000 / secs
    assert 0.5 * rate_kbit < slow_kbit < 1.3 * rate_kbit, slow_kbit
    assert fast_kbit > 10 * rate_kbit, fast_kbit


def test_latency_adds_delay_each_way(trio, censor):
    def connect_time() -> float:
        t0 = time.monotonic()
        socket.create_connection((SERVER, 80), timeout=10).close()
        return time.monotonic() - t0

    censor({"behaviours": [{"behaviour": "latency", "delay_ms": 100, "addresses": [SERVER]}]})
    assert run_in_netns(trio.client, connect_time) >= 0.2  # SYN and SYN/ACK each held 100 ms


def test_lifecycle_reload_and_clean_exit(trio, censor):
    c = censor({"behaviours": [{"behaviour": "ip_blackhole", "addresses": [SERVER]}]})
    assert "CENSORSCOPE" in trio.ns(trio.censor, "iptables", "-S").stdout
    assert run_in_netns(trio.client, lambda: http_request(SERVER, 80, timeout=1))[1] == "timeout"
    # fast switch: same process, new rules and behaviours
    c.write({"behaviours": [{"behaviour": "throttle", "sni": ["slow.example"]}]})
    c.proc.send_signal(signal.SIGHUP)
    c.wait_generation(2)
    assert run_in_netns(trio.client, lambda: http_request(SERVER, 80))[1] == "ok"
    assert "htb" in trio.ns(trio.censor, "tc", "qdisc", "show", "dev", "cli0").stdout
    # a broken config on reload keeps the running one
    c.conf.write_text('{"behaviours": [{"behaviour": "nope"}]}')
    c.proc.send_signal(signal.SIGHUP)
    _wait(lambda: c.records("reload_failed"), 30, "reload failure not logged")
    assert c.generation() == 2 and c.proc.poll() is None
    assert c.stop() == 0
    assert "CENSORSCOPE" not in trio.ns(trio.censor, "iptables", "-S").stdout
    assert "CENSORSCOPE" not in trio.ns(trio.censor, "ip6tables", "-t", "nat", "-S").stdout
    assert "htb" not in trio.ns(trio.censor, "tc", "qdisc", "show", "dev", "cli0").stdout
    assert not c.ready.exists() and c.records()[-1]["action"] == "stopped"


def test_no_packet_leaves_the_lab_ranges(trio, censor, tmp_path):
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    pcap = tmp_path / "censor.pcap"
    dump = trio.spawn(trio.censor, "tcpdump", "-i", "any", "-n", "-U", "-w", str(pcap),
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(lambda: pcap.exists(), 10, "tcpdump did not start")
    time.sleep(0.5)
    censor({"behaviours": [
        {"behaviour": "dns_injection", "names": ["blocked.example"], "injectors": [{}, {"ttl": "copy"}]},
        {"behaviour": "rst_injection", "http_keywords": ["falun"]},
        {"behaviour": "icmp_reject", "addresses": [A.RESOLVER_V4]},
        {"behaviour": "tls_interception", "sni": ["intercepted.example"], "addresses": [SERVER]},
    ]})
    run_in_netns(trio.client, lambda: dns_exchange(A.NO_DNS_V4, "blocked.example", hold=0.3))
    run_in_netns(trio.client, lambda: http_request(SERVER, 80, "/falun"))
    run_in_netns(trio.client, lambda: http_request(A.RESOLVER_V4, 80))
    run_in_netns(trio.client, lambda: tls_fetch(SERVER, "intercepted.example"))
    time.sleep(0.5)
    dump.terminate()
    dump.wait(10)
    packets = [p for p in rdpcap(str(pcap)) if IP in p or IPv6 in p]
    routable = 0
    for p in packets:
        ip = p[IP] if IP in p else p[IPv6]
        addrs = [ipaddress.ip_address(a) for a in (ip.src, ip.dst)]
        if any(a.is_link_local or a.is_multicast for a in addrs):
            continue  # IPv6 neighbour discovery: link-scoped, never routed
        routable += 1
        assert A.in_lab_ranges(ip.src) and A.in_lab_ranges(ip.dst), p.summary()
    assert routable > 20
