"""measure.confirm: synthetic measurements -> the re-tests a careful measurer would run."""

from __future__ import annotations

import pytest

from censorscope.measure.confirm import Confirmer, ConfirmPolicy, make_confirmer, symptoms
from censorscope.probes.errors import ConfigError

POLICY = ConfirmPolicy(attempts=3, spacing=0.5, innocuous_sni="innocuous.example.test")


def m(probe, target, observations, control=None, attempt=0):
    return {"measurement_id": "x1", "probe": probe, "input": target, "attempt": attempt,
            "observations": observations, "control": control, "annotations": {}}


def ctl(observations, failure=None):
    return {"failure": failure, "observations": observations}


def connect(ip="203.0.113.5", port=443, failure=None, id=1):
    return {"id": id, "operation": "connect", "ip": ip, "port": port, "address": f"{ip}:{port}", "failure": failure}


def tls(failure=None, sni="blocked.example.test", ok=True, address="203.0.113.5:443"):
    return {"id": 2, "operation": "tls_handshake", "parent_id": 1, "address": address, "server_name": sni,
            "failure": failure, "verification": None if failure else {"ok": ok, "failure": None if ok else
                                                                     "ssl_unknown_authority"}}


def http_rt(failure=None, status=200, url="http://blocked.example.test/", address="203.0.113.5:80"):
    return {"id": 3, "operation": "http_round_trip", "url": url, "address": address, "failure": failure,
            "status": None if failure else status}


def dnsq(responses=1, addresses=("203.0.113.5",), failure=None):
    return {"id": 1, "operation": "dns_query", "query_name": "blocked.example.test", "query_type": "A",
            "failure": failure, "addresses": list(addresses),
            "responses": [{"t": 0.01 * i, "addresses": list(addresses)} for i in range(responses)]}


def reasons(retests):
    return [r.reason.split(":")[0] for r in retests]


# --- nothing to confirm -------------------------------------------------------------------------

def test_clean_measurements_get_no_retests():
    c = Confirmer(POLICY)
    assert c.retests(m("tcp", "203.0.113.5:80", [connect(port=80)])) == []
    assert c.retests(m("dns", "ok.example.test", [dnsq()])) == []
    assert c.retests(m("http", "http://ok.example.test/", [http_rt()], ctl([http_rt()]))) == []
    tls_ok = m("tls", "203.0.113.5:443", [connect(), tls()], ctl([connect(), tls()]))
    assert c.retests(tls_ok) == []


def test_down_from_the_control_too_is_not_confirmed():
    c = Confirmer(POLICY)
    down = m("tcp", "203.0.113.5:80", [connect(port=80, failure="generic_timeout_error")],
             ctl([connect(port=80, failure="generic_timeout_error")]))
    assert c.retests(down) == []


def test_retests_are_not_reconfirmed_and_disabled_policy_does_nothing():
    looks_blocked = m("tcp", "203.0.113.5:80", [connect(port=80, failure="connection_reset")])
    assert Confirmer(POLICY).retests({**looks_blocked, "attempt": 2}) == []
    assert Confirmer(ConfirmPolicy(enabled=False)).retests(looks_blocked) == []


# --- by technique -------------------------------------------------------------------------------

def test_http_reset_repeated_spaced_past_residual_blocking():
    c = Confirmer(POLICY)
    rts = c.retests(m("http", "http://blocked.example.test/", [http_rt(failure="connection_reset")],
                      ctl([http_rt()])))
    assert [(r.probe, r.target, r.options, r.delay) for r in rts] == [
        ("http", "http://blocked.example.test/", {}, 0.5)] * 3
    assert "probabilistic" in rts[0].reason and "connection_reset" in rts[0].reason


def test_tls_reset_compares_innocuous_sni_on_same_address():
    c = Confirmer(POLICY)
    rts = c.retests(m("tls", "203.0.113.5:443", [connect(), tls(failure="connection_reset")],
                      ctl([connect(), tls()])))
    assert [r.probe for r in rts] == ["tls"] * 5
    innocuous, real = rts[3], rts[4]
    assert (innocuous.target, innocuous.options) == ("203.0.113.5:443", {"sni": "innocuous.example.test"})
    assert (real.target, real.options) == ("203.0.113.5:443", {"sni": "blocked.example.test"})
    assert innocuous.delay == real.delay == 0.5


def test_https_web_failure_adds_sni_comparison_to_the_address_used():
    c = Confirmer(POLICY)
    obs = [dnsq(), connect(), tls(failure="connection_reset")]
    rts = c.retests(m("web", "https://blocked.example.test/", obs, ctl([dnsq(), connect(), tls()])))
    assert [r.probe for r in rts] == ["web", "web", "web", "tls", "tls"]
    assert rts[3].target == "203.0.113.5:443" and rts[3].options == {"sni": "innocuous.example.test"}


def test_interception_certificate_confirmed():
    c = Confirmer(POLICY)
    meas = m("tls", "203.0.113.5:443", [connect(), tls(ok=False)], ctl([connect(), tls(ok=True)]))
    assert any("does not verify" in s for s in symptoms(meas))
    assert len(c.retests(meas)) == 5
    # without a usable control, an unverifiable certificate alone is not flagged (self-signed sites exist)
    assert c.retests(m("tls", "203.0.113.5:443", [connect(), tls(ok=False)], ctl([], failure="helper_timeout"))) == []


def test_dns_injection_requeried_and_sent_to_a_silent_address():
    policy = ConfirmPolicy(attempts=2, spacing=120, no_dns_server="203.0.113.250")
    rts = Confirmer(policy).retests(m("dns", "blocked.example.test", [dnsq(responses=2)]))
    assert [(r.probe, r.options) for r in rts] == [
        ("dns", {}), ("dns", {}), ("dns", {"resolver": "203.0.113.250", "transport": "udp"})]
    assert all(r.delay == 1.0 for r in rts)  # DNS needs no residual spacing
    assert "runs no DNS server" in rts[-1].reason


def test_dns_bogon_and_error_vs_control():
    c = Confirmer(POLICY)
    assert c.retests(m("dns", "blocked.example.test", [dnsq(addresses=("10.10.34.35",))]))
    nx = m("dns", "blocked.example.test", [dnsq(addresses=(), failure="dns_nxdomain_error")], ctl([dnsq()]))
    assert len(c.retests(nx)) == 3
    # NXDOMAIN from both sides: the name does not exist
    both = m("dns", "gone.example.test", [dnsq(addresses=(), failure="dns_nxdomain_error")],
             ctl([dnsq(addresses=(), failure="dns_nxdomain_error")]))
    assert c.retests(both) == []


def test_web_dns_symptom_queries_silent_address_for_the_host():
    policy = ConfirmPolicy(attempts=1, spacing=0, no_dns_server="203.0.113.250:53")
    rts = Confirmer(policy).retests(m("web", "http://blocked.example.test/", [dnsq(responses=2), connect(port=80),
                                                                           http_rt()]))
    assert [(r.probe, r.target) for r in rts] == [("web", "http://blocked.example.test/"),
                                                  ("dns", "blocked.example.test")]


def test_http_status_differs_from_control():
    c = Confirmer(POLICY)
    assert len(c.retests(m("http", "http://x.example.test/", [http_rt(status=403)], ctl([http_rt(status=200)])))) == 3


def test_one_dead_address_among_working_ones_is_not_a_symptom():
    obs = [connect(ip="203.0.113.5", port=80, failure="generic_timeout_error", id=1),
           connect(ip="203.0.113.6", port=80, id=2), http_rt()]
    assert symptoms(m("web", "http://x.example.test/", obs)) == []


def test_throughput_gets_same_path_reference():
    c = Confirmer(POLICY)
    tp = {"id": 3, "operation": "throughput", "address": "203.0.113.5:443", "server_name": "blocked.example.test",
          "failure": None, "rate_bps": 130_000}
    control = ctl([{**tp, "rate_bps": 50_000_000}])
    rts = c.retests(m("throughput", "https://blocked.example.test/big", [connect(), tls(), tp], control))
    assert [(r.probe, r.options) for r in rts] == [
        ("throughput", {"sni": "innocuous.example.test", "address": "203.0.113.5"}), ("throughput", {})]
    # as fast as the control: nothing to confirm
    assert c.retests(m("throughput", "https://blocked.example.test/big", [tp], ctl([tp]))) == []
    # no control: a reference is always needed
    assert len(c.retests(m("throughput", "https://blocked.example.test/big", [tp]))) == 2


# --- the [confirm] table -------------------------------------------------------------------------

def test_policy_from_table():
    p = ConfirmPolicy.from_table({"attempts": 5, "spacing": 90, "innocuous_sni": "www.example.org",
                                  "no_dns_server": "[2001:db8::53]:53"})
    assert (p.attempts, p.spacing, p.innocuous_sni) == (5, 90, "www.example.org")
    assert make_confirmer(None) is None
    assert make_confirmer({"enabled": False}) is None
    assert isinstance(make_confirmer({}), Confirmer)


@pytest.mark.parametrize("table", [
    {"attempts": 0}, {"attempts": 11}, {"attempts": True}, {"spacing": -1}, {"spacing": "90s"},
    {"innocuous_sni": "not a name"}, {"no_dns_server": "dns.example.test"}, {"slow_ratio": 2},
    {"enabled": "yes"}, {"atempts": 3},
])
def test_bad_tables_rejected(table):
    with pytest.raises(ConfigError):
        ConfirmPolicy.from_table(table)


@pytest.mark.parametrize("observations", [
    [{"operation": "throughput", "failure": None, "address": "garbage", "rate_bps": 1}],
    [{"operation": "connect", "failure": "connection_reset"}],
    [{"operation": "dns_query", "failure": "dns_nxdomain_error", "responses": None, "addresses": None}],
    [{"operation": "tls_handshake", "failure": None, "verification": None}],
    [{"operation": "http_round_trip", "failure": "ssl_unknown_authority"}],
    [],
])
def test_odd_stored_shapes_never_raise(observations):
    for probe, target in (("throughput", "https://x.example.test/"), ("web", "https://x.example.test/"),
                          ("dns", "x.example.test"), ("tls", "203.0.113.1:443")):
        Confirmer(POLICY).retests(m(probe, target, observations, ctl([], failure=None)))
