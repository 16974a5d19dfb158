"""Lab servers, measured from the client namespace: nsd, both resolvers (and lying), nginx vhosts
over HTTPS trusting only the lab CA, the sinkhole, and the down / reset / slow servers."""

from __future__ import annotations

import socket
import ssl
import time

import dns.message
import dns.rcode
import pytest

from censorscope.lab import addressing as A

pytestmark = pytest.mark.lab


def _query(server: str, name: str, rdtype: str = "A", timeout: float = 3.0) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q.to_wire(), (server, 53))
        data, _ = s.recvfrom(65535)
    return dns.message.from_wire(data)


def _addresses(msg: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in msg.answer for r in rrset)


def _https(address: str, name: str, ca_file: str | None, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes, dict]:
    """GET https://name/path from ``address``, verifying against ``ca_file`` only; (status, body, cert)."""
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as raw:
        raw.settimeout(timeout)
        raw.connect((address, 443))
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            cert = s.getpeercert()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, cert


def _http(address: str, host: str, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((address, 80))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_authoritative_and_both_resolvers_answer(use_scenario):
    lab = use_scenario("baseline")
    site = lab.scenario.site("www.example.com")
    for server in (A.AUTH_DNS_V4, A.AUTH_DNS_V6, A.RESOLVER_V4, A.RESOLVER_V6, A.PUBLIC_RESOLVER_V4):
        a = lab.topo.call_in("client", _query, server, "www.example.com", "A")
        aaaa = lab.topo.call_in("client", _query, server, "www.example.com", "AAAA")
        assert _addresses(a) == [x for x in site.addresses if ":" not in x], server
        assert _addresses(aaaa) == [x for x in site.addresses if ":" in x], server
    # nsd is authoritative (AA) for the lab root; names outside the scenario do not exist
    assert lab.topo.call_in("client", _query, A.AUTH_DNS_V4, "www.example.com").flags & dns.flags.AA
    nx = lab.topo.call_in("client", _query, A.RESOLVER_V4, "not-in-the-lab.example.com")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    # the control uses the public resolver; it reaches it without crossing the censor
    assert _addresses(lab.topo.call_in("control", _query, A.PUBLIC_RESOLVER_V4, "www.example.com")) == \
        [x for x in site.addresses if ":" not in x]


def test_dig_from_client_uses_lab_resolver(use_scenario):
    lab = use_scenario("baseline")
    out = lab.topo.run("client", ["dig", "+short", "+tries=1", "+time=3", "news.example.org", "A"]).stdout.split()
    assert out == [a for a in lab.scenario.site("news.example.org").addresses if ":" not in a]
    assert f"nameserver {A.RESOLVER_V4}" in lab.topo.run("client", ["cat", "/etc/resolv.conf"]).stdout


def test_https_vhosts_trust_only_the_lab_ca(use_scenario):
    lab = use_scenario("baseline")
    ca = str(lab.ca_file)
    for name in ("www.example.com", "news.example.org", "shared-a.example.net", "shared-b.example.net"):
        for address in lab.scenario.site(name).addresses:
            status, body, cert = lab.topo.call_in("client", _https, address, name, ca)
            assert status == 200 and f"<title>{name}</title>".encode() in body, (name, address)
            assert ("DNS", name) in cert["subjectAltName"]
    # the shared address serves each name its own page (virtual hosts by SNI/Host)
    _, body_b, _ = lab.topo.call_in("client", _https, A.WEB_V4, "shared-b.example.net", ca)
    assert b"shared-b.example.net" in body_b and b"shared-a.example.net" not in body_b
    # without the lab CA the chain is untrusted: the CA is not installed system-wide
    with pytest.raises(ssl.SSLCertVerificationError):
        lab.topo.call_in("client", _https, A.WEB_V4, "shared-a.example.net", None)
    # a large object for throughput probes
    status, body, _ = lab.topo.call_in("client", _https, A.WEB_V4, "shared-a.example.net", ca, "/big.bin")
    assert status == 200 and len(body) == 1 << 20


def test_lab_exec_environment_trusts_lab_ca(use_scenario):
    lab = use_scenario("baseline")
    r = lab.topo.run("client", ["curl", "-sS", "-m", "5", "https://www.example.com/"], env=lab.env())
    assert "<title>www.example.com</title>" in r.stdout


def test_sinkhole_serves_a_451_block_page(use_scenario):
    lab = use_scenario("baseline")
    status, body = lab.topo.call_in("client", _http, A.SINKHOLE_V4, "anything.example.com", "/some/path")
    assert status == 451 and b"Access to this resource is restricted" in body
    status6, _ = lab.topo.call_in("client", _http, A.SINKHOLE_V6, "x.example.com")
    assert status6 == 451


def _connect_outcome(address: str, port: int, timeout: float) -> tuple[str, float]:
    t0 = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((address, port))
            return "connected", time.monotonic() - t0
        except TimeoutError:
            return "timeout", time.monotonic() - t0
        except OSError as e:
            return type(e).__name__ + f":{e.errno}", time.monotonic() - t0


def test_down_server_never_answers(use_scenario):
    lab = use_scenario("server-down")
    outcome, _ = lab.topo.call_in("client", _connect_outcome, A.DOWN_V4, 443, 6.0)
    # nobody holds the address: transit's neighbour discovery fails -> timeout or host unreachable
    assert outcome in ("timeout", "OSError:113"), outcome
    control, _ = lab.topo.call_in("control", _connect_outcome, A.DOWN_V4, 443, 6.0)
    assert control in ("timeout", "OSError:113"), control


def _reset_after_request(address: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((address, port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: broken.example.org\r\n\r\n")
        try:
            data = s.recv(100)
        except ConnectionResetError:
            return "reset"
        return f"data:{data!r}"


def test_reset_server_accepts_then_resets(use_scenario):
    lab = use_scenario("server-reset")
    for role in ("client", "control"):
        assert lab.topo.call_in(role, _reset_after_request, A.RESET_V4, 80) == "reset"
        assert lab.topo.call_in(role, _reset_after_request, A.RESET_V4, 443) == "reset"


def test_slow_server_waits_then_answers(use_scenario):
    lab = use_scenario("slow-server")
    delay = lab.scenario.slow_delay
    t0 = time.monotonic()
    status, body = lab.topo.call_in("client", _http, A.SLOW_V4, "sluggish.example.org", "/", 30.0)
    elapsed = time.monotonic() - t0
    assert status == 200 and b"sluggish.example.org" in body
    assert elapsed >= delay * 0.9
    status, body, cert = lab.topo.call_in("client", _https, A.SLOW_V4, "sluggish.example.org", str(lab.ca_file),
                                          "/", 30.0)
    assert status == 200 and ("DNS", "sluggish.example.org") in cert["subjectAltName"]


def test_lying_resolver(use_scenario):
    lab = use_scenario("resolver-lying")
    q = lambda server, name: lab.topo.call_in("client", _query, server, name)  # noqa: E731
    assert q(A.RESOLVER_V4, "gone.example.org").rcode() == dns.rcode.NXDOMAIN
    assert _addresses(q(A.RESOLVER_V4, "zero.example.org")) == ["0.0.0.0"]
    assert _addresses(q(A.RESOLVER_V4, "sink.example.org")) == [A.SINKHOLE_V4]
    assert _addresses(q(A.RESOLVER_V4, "www.sink.example.org")) == [A.SINKHOLE_V4]  # and below it
    # the public (control) resolver and the authoritative server tell the truth
    for name in ("gone.example.org", "zero.example.org", "sink.example.org"):
        real = [a for a in lab.scenario.site(name).addresses if ":" not in a]
        assert _addresses(q(A.PUBLIC_RESOLVER_V4, name)) == real
        assert _addresses(q(A.AUTH_DNS_V4, name)) == real
    fine = [a for a in lab.scenario.site("fine.example.org").addresses if ":" not in a]
    assert _addresses(q(A.RESOLVER_V4, "fine.example.org")) == fine


def test_cdn_answers_differ_but_serve_the_same_site(use_scenario):
    lab = use_scenario("cdn")
    site = lab.scenario.site("cdn.example.com")
    isp = _addresses(lab.topo.call_in("client", _query, A.RESOLVER_V4, "cdn.example.com"))
    public = _addresses(lab.topo.call_in("control", _query, A.PUBLIC_RESOLVER_V4, "cdn.example.com"))
    assert isp == [a for a in site.isp_addresses if ":" not in a]
    assert public == [a for a in site.addresses if ":" not in a]
    assert isp != public
    pages = {lab.topo.call_in("client", _https, a, site.name, str(lab.ca_file))[1] for a in isp + public}
    assert len(pages) == 1


def test_switch_back_clears_caches(use_scenario):
    lab = use_scenario("resolver-lying")
    assert lab.topo.call_in("client", _query, A.RESOLVER_V4, "gone.example.org").rcode() == dns.rcode.NXDOMAIN
    lab = use_scenario("baseline")
    # a name of the previous scenario must not survive in any cache
    assert lab.topo.call_in("client", _query, A.RESOLVER_V4, "fine.example.org").rcode() == dns.rcode.NXDOMAIN


def test_censorscope_dns_probe_against_resolver_and_nsd(use_scenario):
    import json
    import sys

    lab = use_scenario("baseline")
    want = [a for a in lab.scenario.site("www.example.com").addresses if ":" not in a]
    for server in (A.RESOLVER_V4, A.AUTH_DNS_V4, f"[{A.RESOLVER_V6}]:53"):
        r = lab.topo.run("client", [sys.executable, "-m", "censorscope", "probe", "dns", "www.example.com",
                                    "--resolver", server, "--hold-window", "0.2", "--json"], env=lab.env())
        (obs,) = json.loads(r.stdout)["observations"]
        assert obs["failure"] is None and obs["addresses"] == want, (server, obs)
        assert len(obs["responses"]) == 1  # nothing on the path answers twice in the baseline
