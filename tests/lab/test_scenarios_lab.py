"""Every shipped scenario applied to the session lab, with its censor, checked on the wire from
the client (and the control, which crosses no censor) against the scenario's ground truth."""

from __future__ import annotations

import labclients as C
import pytest

from censorscope.lab import addressing as A
from censorscope.lab import scenario as S

pytestmark = pytest.mark.lab


def v4(site) -> str:
    return next(a for a in site.addresses if ":" not in a)


def v6(site) -> str:
    return next(a for a in site.addresses if ":" in a)


@pytest.mark.parametrize("name", S.shipped())
def test_each_scenario_applies_in_place(use_scenario, name):
    lab = use_scenario(name)
    assert lab.scenario.name == name
    namespaces_before = dict(lab.topo.namespaces)
    # the censor runs exactly when the scenario asks for behaviours (and stays for reloads)
    if lab.scenario.censor:
        assert lab.topo.procs["censor"].poll() is None
    # every site answers DNS from the public resolver as the scenario says
    for site in lab.scenario.sites[:5]:
        got = lab.topo.call_in("control", C.dns_responses, A.PUBLIC_RESOLVER_V4, site.name, "A", 0.5)
        want = sorted(a for a in site.addresses if ":" not in a)
        assert got and got[0][1] == want, (site.name, got)
    assert lab.topo.namespaces == namespaces_before


def test_dns_injection(use_scenario):
    lab = use_scenario("dns-injection")
    site = lab.scenario.site("blocked.example.com")
    got = lab.topo.call_in("client", C.dns_responses, A.RESOLVER_V4, site.name)
    assert len(got) >= 2, got
    assert got[0][1][0] in A.FORGED_POOL_V4  # the forged answer wins the race
    assert [v4(site)] in [r[1] for r in got[1:]]  # and the real one still arrives
    # an address that runs no DNS server still "answers": only the injector can
    only = lab.topo.call_in("client", C.dns_responses, A.NO_DNS_V4, site.name)
    assert only and all(r[1][0] in A.FORGED_POOL_V4 for r in only)
    # untouched: other names, and the control's path
    assert len(lab.topo.call_in("client", C.dns_responses, A.RESOLVER_V4, "www.example.com")) == 1
    control = lab.topo.call_in("control", C.dns_responses, A.PUBLIC_RESOLVER_V4, site.name)
    assert [(r[1], r[2]) for r in control] == [([v4(site)], "NOERROR")]


def test_ip_blackhole(use_scenario):
    lab = use_scenario("ip-blackhole")
    dark, lit = lab.scenario.site("dark.example.net"), lab.scenario.site("lit.example.net")
    assert lab.topo.call_in("client", C.connect, v4(dark), 443, 2.0)[0] == "timeout"
    assert lab.topo.call_in("client", C.connect, v6(dark), 443, 2.0)[0] == "timeout"
    assert lab.topo.call_in("client", C.connect, v4(lit), 443)[0] == "ok"
    assert lab.topo.call_in("control", C.connect, v4(dark), 443)[0] == "ok"


def test_icmp_reject(use_scenario):
    lab = use_scenario("icmp-reject")
    bad = lab.scenario.site("refused.example.net")
    result, _ = lab.topo.call_in("client", C.connect, v4(bad), 443, 5.0)
    assert result not in ("ok", "timeout"), result
    assert lab.topo.call_in("client", C.connect, v4(lab.scenario.site("allowed.example.net")), 443)[0] == "ok"
    assert lab.topo.call_in("control", C.connect, v4(bad), 443)[0] == "ok"


def test_http_keyword_rst(use_scenario):
    lab = use_scenario("http-keyword-rst", fresh=True)
    site = lab.scenario.site("news.example.net")
    assert lab.topo.call_in("client", C.http_get, v4(site), site.name, "/search?q=falun")[0] in ("reset", "eof")
    res = lab.topo.call_in("client", C.http_get, v4(site), site.name, "/")
    assert res[:2] == ("ok", 200)
    assert lab.topo.call_in("client", C.https_get, v4(site), site.name, str(lab.ca_file), "/search?q=falun")[:2] \
        == ("ok", 200)


def only_the_sni_is_censored(lab, name: str, innocuous: str, seen: str) -> None:
    """HTTPS to ``name`` ends in ``seen`` from the client, while ``innocuous`` on the same address
    loads; from the control (no censor) ``name`` loads too."""
    addr = v4(lab.scenario.site(name))
    ca = str(lab.ca_file)
    assert lab.topo.call_in("client", C.https_get, addr, name, ca)[0] == seen
    assert lab.topo.call_in("client", C.https_get, addr, innocuous, ca)[:2] == ("ok", 200)
    assert lab.topo.call_in("control", C.https_get, addr, name, ca)[:2] == ("ok", 200)


def test_sni_rst(use_scenario):
    only_the_sni_is_censored(use_scenario("sni-rst", fresh=True), "forbidden.example.org", "innocuous.example.org",
                             "reset")


def test_residual_penalty_box(use_scenario):
    lab = use_scenario("residual", fresh=True)
    addr = v4(lab.scenario.site("trigger.example.org"))
    ca = str(lab.ca_file)
    assert lab.topo.call_in("client", C.https_get, addr, "bystander.example.org", ca)[:2] == ("ok", 200)
    assert lab.topo.call_in("client", C.https_get, addr, "trigger.example.org", ca)[0] == "reset"
    # same (client, server, 443) within the window: the innocent name is punished too
    assert lab.topo.call_in("client", C.https_get, addr, "bystander.example.org", ca)[0] == "reset"
    # other ports are not in the box
    assert lab.topo.call_in("client", C.http_get, addr, "bystander.example.org")[:2] == ("ok", 200)
    lab = use_scenario("residual", fresh=True)  # a reload empties the box
    assert lab.topo.call_in("client", C.https_get, addr, "bystander.example.org", ca)[:2] == ("ok", 200)


def test_blockpage_injection(use_scenario):
    lab = use_scenario("blockpage-injection", fresh=True)
    site = lab.scenario.site("banned.example.com")
    result, status, body = lab.topo.call_in("client", C.http_get, v4(site), site.name)
    assert (result, status) == ("ok", 451) and b"restricted" in body and site.name.encode() not in body
    assert lab.topo.call_in("client", C.https_get, v4(site), site.name, str(lab.ca_file))[:2] == ("ok", 200)
    assert lab.topo.call_in("control", C.http_get, v4(site), site.name)[:2] == ("ok", 200)


def test_tls_interception(use_scenario):
    only_the_sni_is_censored(use_scenario("tls-interception", fresh=True), "watched.example.net",
                             "unwatched.example.net", "cert_invalid")


def test_sni_throttling(use_scenario):
    lab = use_scenario("sni-throttling", fresh=True)
    addr = v4(lab.scenario.site("slowed.example.com"))
    ca = str(lab.ca_file)
    fast = lab.topo.call_in("client", C.https_get, addr, "unslowed.example.com", ca, "/big.bin", 30.0)
    slow = lab.topo.call_in("client", C.https_get, addr, "slowed.example.com", ca, "/big.bin", 30.0, None, 3.0)
    assert fast[0] == "ok" and len(fast[2]) == 1 << 20
    assert slow[0] == "ok" and 0 < len(slow[2]) < 1 << 20
    fast_rate, slow_rate = len(fast[2]) / fast[3], len(slow[2]) / slow[3]
    assert slow_rate * 10 < fast_rate, (slow_rate, fast_rate)


def test_latency_is_added_on_the_whole_path(use_scenario):
    lab = use_scenario("latency", fresh=True)
    delay = lab.scenario.censor[0]["delay_ms"] / 1000
    result, seconds = lab.topo.call_in("client", C.connect, A.SERVER_V4, 9, 10.0)
    assert result == "refused" and seconds >= 2 * delay * 0.9
    assert lab.topo.call_in("control", C.connect, A.SERVER_V4, 9)[1] < seconds


def test_gfw_spot_checks(use_scenario):
    lab = use_scenario("gfw", fresh=True)
    ca = str(lab.ca_file)
    sc = lab.scenario
    fb = lab.topo.call_in("client", C.dns_responses, A.RESOLVER_V4, "www.facebook.com")
    assert fb[0][1][0] in A.FORGED_POOL_V4
    wiki = v4(sc.site("en.wikipedia.org"))
    assert lab.topo.call_in("client", C.https_get, wiki, "en.wikipedia.org", ca)[0] == "reset"
    tor = v4(sc.site("www.torproject.org"))
    assert lab.topo.call_in("client", C.connect, tor, 443, 2.0)[0] == "timeout"
    eff = sc.site("www.eff.org")
    assert lab.topo.call_in("client", C.https_get, v4(eff), eff.name, ca)[:2] == ("ok", 200)
    un = sc.site("www.un.org")
    assert lab.topo.call_in("client", C.http_get, v4(un), un.name, "/search?q=tiananmen")[0] == "reset"
