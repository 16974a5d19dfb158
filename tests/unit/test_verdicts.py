"""Verdict engine on synthetic measurements built to docs/observations.md.

One test (at least) per method and per known trap; every test checks the
verdict, the method and that the evidence names the observations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json

import pytest

import censorscope.analysis as analysis
from censorscope.analysis.verdicts import COLUMNS, RULES_VERSION, Verdict, register, verdict_for, verdicts
from censorscope.analysis.verdicts.engine import RULES

_ids = itertools.count()
BASE = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)
RESOLVER = "203.0.113.10:53"


def stamp(offset: float) -> str:
    return (BASE + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meas(probe, inp, obs, control="same", *, start=0.0, attempt=0, confirms=None, mid=None, ann=None,
         control_obs=None, control_failure=None):
    """A stored measurement. ``control``: "same" -> ``control_obs`` given, None -> no control."""
    annotations = dict(ann or {})
    if confirms:
        annotations["confirms"] = confirms
    ctl = None
    if control == "same":
        ctl = {"observations": control_obs if control_obs is not None else [], "failure": control_failure}
    return {
        "measurement_id": mid or f"m{next(_ids)}", "campaign": "t", "run_id": "r1", "probe": probe,
        "probe_version": "1", "input": inp, "repetition": 0, "attempt": attempt,
        "measurement_start_time": stamp(start), "runtime": 1.0,
        "vantage": {"cc": "ZZ", "asn": "AS64500", "network": "lab", "resolver": RESOLVER},
        "software": {"name": "censorscope", "version": "0"}, "observations": obs, "control": ctl,
        "annotations": annotations,
    }


def ob(op, id, failure=None, parent=None, t0=0.0, t=0.05, **fields):
    d = {"id": id, "operation": op, "parent_id": parent, "t0": t0, "t": t, "failure": failure}
    d.update(fields)
    return d


def resp(addrs, t=0.01, source=RESOLVER, rcode="NOERROR", cnames=()):
    answers = [{"name": "x", "type": "CNAME", "ttl": 60, "data": c} for c in cnames]
    answers += [{"name": "x", "type": "A", "ttl": 60, "data": a} for a in addrs]
    return {"t": t, "source": source, "query_id": 1, "rcode": rcode, "flags": [], "answers": answers,
            "addresses": list(addrs), "size": 60}


def dnsq(id, name, addrs=(), *, failure=None, responses=None, resolver=RESOLVER, qtype="A"):
    if responses is None:
        responses = [] if failure == "generic_timeout_error" else [
            resp(addrs, rcode={"dns_nxdomain_error": "NXDOMAIN", "dns_servfail_error": "SERVFAIL",
                               "dns_refused_error": "REFUSED"}.get(failure, "NOERROR"))]
    first = responses[0]["addresses"] if responses else []
    return ob("dns_query", id, failure, query_name=name, query_type=qtype, transport="udp", resolver=resolver,
              query_id=1, hold_window=0.5, responses=responses, addresses=first)


def conn(id, address, failure=None, parent=None, t=0.02):
    ip, port = address.rsplit(":", 1)
    return ob("connect", id, failure, parent, t=t, address=address, ip=ip, port=int(port), proto="tcp",
              **({} if failure else {"local_port": 40000 + id}))


def cert(leaf="a" * 64, issuer="CN=Lab CA", subject="CN=site"):
    return [{"subject": subject, "issuer": issuer, "sans": ["site"], "sha256": leaf,
             "not_before": "2026-01-01", "not_after": "2027-01-01"}]


def tlsh(id, address, sni, failure=None, parent=None, *, leaf="a" * 64, issuer="CN=Lab CA", verified=True):
    extra = {}
    if not failure:
        extra = {"tls_version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "alpn": None,
                 "peer_certificates": cert(leaf, issuer),
                 "verification": {"ok": verified, "failure": None if verified else "ssl_unknown_authority",
                                  "hostname_ok": verified, "detail": None if verified else "self-signed"}}
    return ob("tls_handshake", id, failure, parent, address=address, server_name=sni, alpn_offered=[], **extra)


def page(title, words=40, extra=""):
    return f"<html><head><title>{title}</title></head><body>{extra}{' lorem' * words}</body></html>"


def rt(id, url, body=None, status=200, failure=None, parent=None, title=None, headers=None, hops=None, address=None):
    extra = {}
    if not failure:
        body = body if body is not None else page(title or "Welcome site")
        extra = {"status": status, "headers": headers or [["Content-Type", "text/html"], ["X-Site-Build", "7"]],
                 "body_length": len(body.encode()), "body_sha256": hashlib.sha256(body.encode()).hexdigest(),
                 "body_truncated": False, "body_head": body, "title": title}
        if title is None:
            import re
            mt = re.search(r"<title>(.*?)</title>", body)
            extra["title"] = mt.group(1) if mt else None
    return ob("http_round_trip", id, failure, parent, url=url, method="GET", address=address,
              request_headers=[["Host", "site"]], hops=hops or [], **extra)


def one(m, related=()):
    v = verdict_for(m, related)
    assert isinstance(v, Verdict)
    return v


# --- DNS -------------------------------------------------------------------------------------
def test_dns_same_answer_as_control_is_ok():
    m = meas("dns", "site.example", [dnsq(1, "site.example", ["203.0.113.100"])],
             control_obs=[dnsq(1, "site.example", ["203.0.113.100"])])
    v = one(m)
    assert (v.verdict, v.method) == ("ok", None)
    assert "dns_query #1" in v.evidence and "203.0.113.100" in v.evidence


def test_dns_injection_race_two_answers_for_one_query():
    q = dnsq(1, "blocked.example", responses=[resp(["198.51.100.77"], t=0.002, source="203.0.113.10:53"),
                                              resp(["203.0.113.101"], t=0.03)])
    m = meas("dns", "blocked.example", [q], control_obs=[dnsq(1, "blocked.example", ["203.0.113.101"])])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "dns.injection")
    assert "dns_query #1" in v.evidence and "198.51.100.77" in v.evidence and "2 responses" in v.evidence


def test_duplicate_identical_responses_are_not_a_race():
    q = dnsq(1, "site.example", responses=[resp(["203.0.113.100"]), resp(["203.0.113.100"], t=0.04)])
    m = meas("dns", "site.example", [q], control_obs=[dnsq(1, "site.example", ["203.0.113.100"])])
    assert one(m).verdict == "ok"


def test_dns_known_forged_address_is_injection_even_without_control():
    m = meas("dns", "blocked.example", [dnsq(1, "blocked.example", ["159.106.121.75"])], control=None)
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "dns.injection")
    assert "cn-gfw-forged-classic" in v.evidence and "159.106.121.75" in v.evidence and v.confidence >= 0.95


def test_dns_blockpage_iran_address():
    m = meas("dns", "blocked.example", [dnsq(1, "blocked.example", ["10.10.34.35"])],
             control_obs=[dnsq(1, "blocked.example", ["203.0.113.101"])])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "dns.blockpage")
    assert "ir-national-blockpage" in v.evidence and "dns_query #1" in v.evidence


def test_dns_blockpage_by_cname():
    q = dnsq(1, "blocked.example", responses=[resp(["198.51.100.9"], cnames=["trustpositif.kominfo.go.id."])])
    m = meas("dns", "blocked.example", [q], control_obs=[dnsq(1, "blocked.example", ["203.0.113.101"])])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "dns.blockpage")
    assert "trustpositif" in v.evidence


def test_dns_bogon_answer():
    m = meas("dns", "blocked.example", [dnsq(1, "blocked.example", ["127.0.0.1"])],
             control_obs=[dnsq(1, "blocked.example", ["203.0.113.101"])])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "dns.bogon")
    assert "127.0.0.1" in v.evidence and "dns_query #1" in v.evidence


def test_dns_nxdomain_while_control_resolves():
    m = meas("dns", "blocked.example", [dnsq(1, "blocked.example", failure="dns_nxdomain_error")],
             control_obs=[dnsq(1, "blocked.example", ["203.0.113.101"])])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "dns.nxdomain")
    assert "dns_nxdomain_error" in v.evidence and "dns_query #1" in v.evidence


def test_dns_nxdomain_for_both_is_down():
    m = meas("dns", "gone.example", [dnsq(1, "gone.example", failure="dns_nxdomain_error")],
             control_obs=[dnsq(1, "gone.example", failure="dns_nxdomain_error")])
    v = one(m)
    assert (v.verdict, v.method) == ("down", None)
    assert "control" in v.evidence


def test_dns_answer_only_inside_from_address_without_dns_server():
    q = dnsq(1, "blocked.example", ["198.51.100.66"], resolver="203.0.113.254:53")
    m = meas("dns", "blocked.example", [q], ann={"no_dns_server": True},
             control_obs=[dnsq(1, "blocked.example", failure="generic_timeout_error", resolver="203.0.113.254:53")])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "dns.injection")
    assert "203.0.113.254:53" in v.evidence


def test_dns_servfail_needs_resolver_working_for_other_names():
    ctl = [dnsq(1, "blocked.example", ["203.0.113.101"])]
    m = meas("dns", "blocked.example", [dnsq(1, "blocked.example", failure="dns_servfail_error")], control_obs=ctl)
    assert one(m).verdict == "inconclusive"
    other = meas("dns", "fine.example", [dnsq(1, "fine.example", ["203.0.113.102"])],
                 control_obs=[dnsq(1, "fine.example", ["203.0.113.102"])])
    v = one(m, [other])
    assert (v.verdict, v.method) == ("blocked", "dns.servfail")
    assert "1 other name" in v.evidence


def test_cdn_answer_differing_but_consistent_is_ok():
    """Trap: a CDN gives a different address; TLS with a valid certificate there shows it is legitimate."""
    obs = [dnsq(1, "cdn.example", ["203.0.113.150"]), conn(2, "203.0.113.150:443", parent=1),
           tlsh(3, "203.0.113.150:443", "cdn.example", parent=2, leaf="b" * 64, verified=True),
           rt(4, "https://cdn.example/", parent=3, title="CDN home", body=page("CDN home", 50))]
    ctl = [dnsq(1, "cdn.example", ["203.0.113.160"]), conn(2, "203.0.113.160:443", parent=1),
           tlsh(3, "203.0.113.160:443", "cdn.example", parent=2, leaf="c" * 64),
           rt(4, "https://cdn.example/", parent=3, title="CDN home", body=page("CDN home", 52))]
    v = one(meas("web", "https://cdn.example/", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("ok", None), v.evidence


def test_dns_differing_answer_alone_is_inconclusive_not_injection():
    m = meas("dns", "cdn.example", [dnsq(1, "cdn.example", ["203.0.113.150"])],
             control_obs=[dnsq(1, "cdn.example", ["203.0.113.160"])])
    v = one(m)
    assert v.verdict == "inconclusive" and "CDN" in v.evidence


def test_dns_differing_answer_validated_by_other_measurement_is_ok():
    m = meas("dns", "cdn.example", [dnsq(1, "cdn.example", ["203.0.113.150"])],
             control_obs=[dnsq(1, "cdn.example", ["203.0.113.160"])])
    tls_m = meas("tls", "cdn.example:443", [conn(1, "203.0.113.150:443"),
                                             tlsh(2, "203.0.113.150:443", "cdn.example", parent=1)],
                 control_obs=[conn(1, "203.0.113.160:443"), tlsh(2, "203.0.113.160:443", "cdn.example", parent=1)])
    v = one(m, [tls_m])
    assert v.verdict == "ok" and "certificate valid" in v.evidence


def test_web_forged_address_with_wrong_certificate_is_inconsistent():
    obs = [dnsq(1, "blocked.example", ["203.0.113.190"]), conn(2, "203.0.113.190:443", parent=1),
           tlsh(3, "203.0.113.190:443", "blocked.example", parent=2, leaf="e" * 64, issuer="CN=Other",
                verified=False)]
    ctl = [dnsq(1, "blocked.example", ["203.0.113.101"]), conn(2, "203.0.113.101:443", parent=1),
           tlsh(3, "203.0.113.101:443", "blocked.example", parent=2, leaf="f" * 64)]
    v = one(meas("web", "https://blocked.example/", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("blocked", "dns.inconsistent")
    assert "203.0.113.190" in v.evidence and "tls_handshake #3" in v.evidence


# --- TCP -------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure,method", [("generic_timeout_error", "tcp.blackhole"),
                                            ("connection_reset", "tcp.reset"),
                                            ("connection_refused", "tcp.reject")])
def test_tcp_failures_with_control_connecting(failure, method):
    m = meas("tcp", "203.0.113.120:443", [conn(1, "203.0.113.120:443", failure)],
             control_obs=[conn(1, "203.0.113.120:443")])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", method)
    assert f"connect #1 to 203.0.113.120:443 failed {failure}" in v.evidence
    assert "control connect #1" in v.evidence


def test_control_failing_the_same_way_is_down():
    m = meas("tcp", "203.0.113.251:443", [conn(1, "203.0.113.251:443", "generic_timeout_error")],
             control_obs=[conn(1, "203.0.113.251:443", "generic_timeout_error")])
    v = one(m)
    assert (v.verdict, v.method) == ("down", None)
    assert "control connect #1" in v.evidence and "generic_timeout_error" in v.evidence


def test_missing_control_is_inconclusive():
    m = meas("tcp", "203.0.113.120:443", [conn(1, "203.0.113.120:443", "generic_timeout_error")], control=None)
    v = one(m)
    assert (v.verdict, v.method) == ("inconclusive", None)
    assert "no control" in v.evidence and "connect #1" in v.evidence


def test_failed_control_is_inconclusive():
    m = meas("tcp", "203.0.113.120:443", [conn(1, "203.0.113.120:443", "connection_reset")],
             control_obs=[], control_failure="helper unreachable")
    v = one(m)
    assert v.verdict == "inconclusive" and "control failed to run" in v.evidence


def test_network_unreachable_is_not_called_blocking():
    m = meas("tcp", "203.0.113.120:443", [conn(1, "203.0.113.120:443", "network_unreachable")],
             control_obs=[conn(1, "203.0.113.120:443")])
    assert one(m).verdict == "inconclusive"


# --- TLS -------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure,method", [("connection_reset", "tls.sni_reset"),
                                            ("generic_timeout_error", "tls.sni_drop")])
def test_tls_sni_failures(failure, method):
    obs = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "blocked.example", failure, parent=1)]
    ctl = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "blocked.example", parent=1)]
    v = one(meas("tls", "blocked.example:443", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("blocked", method)
    assert "tls_handshake #2 to 203.0.113.80:443 (SNI blocked.example)" in v.evidence
    assert "control tls_handshake #2" in v.evidence


def test_tls_innocuous_sni_on_same_address_raises_confidence():
    obs = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "blocked.example", "connection_reset", 1),
           conn(3, "203.0.113.80:443"), tlsh(4, "203.0.113.80:443", "innocuous.example", parent=3)]
    ctl = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "blocked.example", parent=1)]
    v = one(meas("tls", "blocked.example:443", obs, control_obs=ctl))
    assert v.method == "tls.sni_reset" and v.confidence > 0.9 and "innocuous.example" in v.evidence


def test_tls_mitm_certificate():
    obs = [conn(1, "203.0.113.80:443"),
           tlsh(2, "203.0.113.80:443", "bank.example", parent=1, leaf="d" * 64, issuer="CN=National CA",
                verified=False)]
    ctl = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "bank.example", parent=1, leaf="a" * 64)]
    v = one(meas("tls", "bank.example:443", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("blocked", "tls.mitm")
    assert "National CA" in v.evidence and "tls_handshake #2" in v.evidence


def test_tls_self_signed_same_as_control_is_ok():
    obs = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "site.example", parent=1, verified=False)]
    ctl = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "site.example", parent=1, verified=False)]
    v = one(meas("tls", "site.example:443", obs, control_obs=ctl))
    assert v.verdict == "ok" and "control's own" in v.evidence


# --- HTTP ------------------------------------------------------------------------------------
def test_http_reset():
    obs = [conn(1, "203.0.113.80:80"), rt(2, "http://blocked.example/", failure="connection_reset", parent=1)]
    ctl = [conn(1, "203.0.113.80:80"), rt(2, "http://blocked.example/", parent=1)]
    v = one(meas("http", "http://blocked.example/", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("blocked", "http.reset")
    assert "http_round_trip #2" in v.evidence and "connection_reset" in v.evidence
    assert v.endpoint == "203.0.113.80:80"


def test_http_blockpage_fingerprint_confirmed_without_control():
    body = '<html><body><iframe src="http://10.10.34.34?type=Invalid Site"></iframe></body></html>'
    obs = [conn(1, "203.0.113.80:80"), rt(2, "http://blocked.example/", body=body, parent=1)]
    v = one(meas("http", "http://blocked.example/", obs, control=None))
    assert (v.verdict, v.method) == ("blocked", "http.blockpage:ir-national-iframe")
    assert "http_round_trip #2" in v.evidence and v.confidence >= 0.95


def test_http_blockpage_by_redirect_location():
    hops = [{"url": "http://blocked.example/", "status": 302, "headers": [["Location", "http://warning.or.kr"]],
             "location": "http://warning.or.kr"}]
    obs = [conn(1, "203.0.113.80:80"), rt(2, "http://blocked.example/", parent=1, hops=hops)]
    v = one(meas("http", "http://blocked.example/", obs, control=None))
    assert v.method == "http.blockpage:kr-warning-redirect" and "redirect" in v.evidence


def test_http_diff_everything_differs():
    obs = [conn(1, "203.0.113.80:80"),
           rt(2, "http://blocked.example/", status=403, body=page("Denied", 3), parent=1, headers=[["Server", "x"]])]
    ctl = [conn(1, "203.0.113.80:80"), rt(2, "http://blocked.example/", body=page("Blocked example news", 400),
                                          parent=1)]
    v = one(meas("http", "http://blocked.example/", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("blocked", "http.diff")
    assert "status 403 vs control 200" in v.evidence and "http_round_trip #2" in v.evidence


def test_dynamic_page_same_title_and_status_is_ok():
    """Trap: a dynamic page is much shorter or longer than the control's, but status and title agree."""
    obs = [conn(1, "203.0.113.80:80"), rt(2, "http://news.example/", body=page("Daily news today", 30), parent=1)]
    ctl = [conn(1, "203.0.113.80:80"), rt(2, "http://news.example/", body=page("Daily news today", 400), parent=1)]
    v = one(meas("http", "http://news.example/", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("ok", None)
    assert "ratio" in v.evidence and "title" in v.evidence


def test_cloudflare_challenge_is_not_http_diff():
    body = page("Just a moment...", 5, "Checking your browser before accessing news.example.")
    obs = [conn(1, "203.0.113.80:80"), rt(2, "http://news.example/", status=403, body=body, parent=1,
                                          headers=[["Server", "cloudflare"]])]
    ctl = [conn(1, "203.0.113.80:80"), rt(2, "http://news.example/", body=page("Daily news", 400), parent=1)]
    v = one(meas("http", "http://news.example/", obs, control_obs=ctl))
    assert v.verdict == "inconclusive" and "cloudflare-challenge" in v.evidence


# --- QUIC / VPN / FET ------------------------------------------------------------------------
def test_quic_blocked():
    q = ob("quic_handshake", 1, "generic_timeout_error", address="203.0.113.80:443", server_name="blocked.example")
    cq = ob("quic_handshake", 1, None, address="203.0.113.80:443", server_name="blocked.example")
    v = one(meas("quic", "blocked.example:443", [q], control_obs=[cq]))
    assert (v.verdict, v.method) == ("blocked", "quic.blocked")
    assert "quic_handshake #1" in v.evidence


def test_vpn_handshake_without_answer_while_control_answered():
    obs = [conn(1, "203.0.113.30:1194"),
           ob("openvpn_handshake", 2, "generic_timeout_error", 1, address="203.0.113.30:1194")]
    ctl = [conn(1, "203.0.113.30:1194"), ob("openvpn_handshake", 2, None, 1, address="203.0.113.30:1194")]
    v = one(meas("openvpn", "203.0.113.30:1194", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("blocked", "vpn.openvpn.blocked.fingerprint")  # TCP connected
    assert "openvpn_handshake #2" in v.evidence and "control openvpn_handshake #2 to 203.0.113.30:1194 succeeded" in v.evidence


def test_vpn_port_blocked_and_down():
    obs = [conn(1, "203.0.113.31:22", "generic_timeout_error")]
    v = one(meas("ssh", "203.0.113.31:22", obs, control_obs=[conn(1, "203.0.113.31:22")]))
    assert v.method == "vpn.ssh.blocked.port"
    v = one(meas("ssh", "203.0.113.31:22", [conn(1, "203.0.113.31:22", "connection_refused")],
                 control_obs=[conn(1, "203.0.113.31:22", "connection_refused")]))
    assert (v.verdict, v.method) == ("down", None)


def _fet(i, failure=None, kind="fet", t0=None):
    return ob("fet_attempt", i, failure, t0=float(i) if t0 is None else t0, t=float(i) + 0.5,
              address="203.0.113.40:443", kind=kind, attempt=i, outcome=failure or "data")


def test_fet_blocked_first_failure_non_exempt_then_residual():
    obs = [_fet(1), _fet(2, kind="control"), _fet(3, "generic_timeout_error"),
           conn(4, "203.0.113.40:443", "generic_timeout_error"), _fet(5, "generic_timeout_error", kind="followup")]
    obs[3]["t0"] = 4.0
    ctl = [_fet(1), _fet(2, kind="control"), _fet(3), _fet(4, kind="control")]
    v = one(meas("fet", "fet://203.0.113.40:443", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("blocked", "vpn.fet.blocked.residual")
    assert "fet_attempt #3" in v.evidence and "residual" in v.evidence and "1 of 2 non-exempt" in v.evidence


def test_fet_single_failure_or_exempt_first_is_inconclusive_and_both_sides_down():
    ctl = [_fet(1), _fet(2, kind="control"), _fet(3)]
    single = [_fet(1, "generic_timeout_error"), _fet(2, kind="control"), _fet(3), _fet(4, kind="control")]
    assert one(meas("fet", "fet://203.0.113.40:443", single, control_obs=ctl)).verdict == "inconclusive"
    exempt_first = [_fet(1), _fet(2, "connection_reset", kind="control"), _fet(3, "connection_reset")]
    v = one(meas("fet", "fet://203.0.113.40:443", exempt_first, control_obs=ctl))
    assert v.verdict == "inconclusive" and "exempt" in v.evidence
    bad_ctl = [_fet(1, "connection_reset"), _fet(2, "connection_reset", kind="control")]
    assert one(meas("fet", "fet://203.0.113.40:443", exempt_first, control_obs=bad_ctl)).verdict == "down"
    fine = [_fet(1), _fet(2, kind="control"), _fet(3)]
    assert one(meas("fet", "fet://203.0.113.40:443", fine, control_obs=ctl)).verdict == "ok"


# --- throughput ------------------------------------------------------------------------------
def samples(rate_bps, n=30, dt_=0.1):
    return [[round(i * dt_, 3), int(rate_bps * i * dt_)] for i in range(n + 1)]


def tput(id, address, sni, rate):
    s = samples(rate)
    return ob("throughput", id, None, url=f"https://{sni}/big", address=address, server_name=sni,
              bytes=s[-1][1], duration=s[-1][0], samples=s, rate_bps=rate)


def _jitter(obs, seed):
    import random
    r = random.Random(seed)
    for o in obs:
        o["samples"] = [[t, int(b * (1 + r.uniform(-0.03, 0.03)))] if i else [t, b]
                        for i, (t, b) in enumerate(o["samples"])]
        o["samples"] = [[t, max(b, o["samples"][i - 1][1] if i else 0)] for i, (t, b) in enumerate(o["samples"])]
    return obs


def test_throttled_against_same_path_reference():
    obs = _jitter([tput(1, "203.0.113.90:443", "slowed.example", 17_000),
                   tput(2, "203.0.113.90:443", "innocuous.example", 2_000_000)], 1)
    v = one(meas("throughput", "https://slowed.example/big", obs, control_obs=[]))
    assert (v.verdict, v.method) == ("blocked", "throttled")
    assert "throughput #1" in v.evidence and "innocuous.example" in v.evidence


def test_uniformly_slow_path_is_not_throttling():
    """Trap: the target is slow, but so is an innocuous transfer on the same path."""
    obs = _jitter([tput(1, "203.0.113.90:443", "site.example", 17_000),
                   tput(2, "203.0.113.90:443", "innocuous.example", 17_500)], 2)
    ctl = _jitter([tput(1, "203.0.113.90:443", "site.example", 5_000_000)], 3)
    v = one(meas("throughput", "https://site.example/big", obs, control_obs=ctl))
    assert (v.verdict, v.method) == ("ok", None)
    assert "slow" in v.evidence


def test_slow_without_reference_is_inconclusive():
    obs = _jitter([tput(1, "203.0.113.90:443", "site.example", 17_000)], 4)
    ctl = _jitter([tput(1, "203.0.113.90:443", "site.example", 5_000_000)], 5)
    v = one(meas("throughput", "https://site.example/big", obs, control_obs=ctl))
    assert v.verdict == "inconclusive" and "path slowness" in v.evidence


# --- attempts and residual censorship -------------------------------------------------------
def _tls_attempt(failure, *, attempt=0, confirms=None, mid=None, start=0.0, host="blocked.example"):
    obs = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", host, failure, parent=1)]
    ctl = [conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", host, parent=1)]
    return meas("tls", f"{host}:443", obs, control_obs=ctl, attempt=attempt, confirms=confirms, mid=mid,
                start=start)


def test_probabilistic_trigger_two_resets_among_attempts_is_blocked():
    first = _tls_attempt("connection_reset", mid="g1")
    rest = [_tls_attempt(None, attempt=1, confirms="g1", start=200), _tls_attempt("connection_reset", attempt=2,
                                                                                 confirms="g1", start=400)]
    df = verdicts([first, *rest])
    assert len(df) == 1
    row = df.iloc[0]
    assert (row.verdict, row.method, row.measurement_id) == ("blocked", "tls.sni_reset", "g1")
    assert "2 of 3 attempts" in row.evidence


def test_one_reset_among_attempts_is_inconclusive():
    first = _tls_attempt("connection_reset", mid="g2")
    rest = [_tls_attempt(None, attempt=i, confirms="g2", start=200 * i) for i in (1, 2, 3)]
    v = one(first, rest)
    assert v.verdict == "inconclusive" and "Only 1 of 4 attempts" in v.evidence and "#1 tls ok" in v.evidence


def test_residual_blocking_after_other_input_trigger():
    trigger = _tls_attempt("connection_reset", mid="t1", start=0, host="blocked.example")
    victim = _tls_attempt("connection_reset", mid="t2", start=30, host="innocent.example")
    df = verdicts([victim, trigger])
    rows = {r.measurement_id: r for r in df.itertuples()}
    assert rows["t1"].verdict == "blocked"
    assert (rows["t2"].verdict, rows["t2"].method) == ("inconclusive", "residual")
    assert "t1" in rows["t2"].evidence and "203.0.113.80:443" in rows["t2"].evidence
    assert "residual" in rows["t2"].evidence and "not evidence" in rows["t2"].evidence
    # long after the window, the same failure stands on its own
    late = _tls_attempt("connection_reset", mid="t3", start=1000, host="innocent.example")
    assert one(late, [trigger]).verdict == "blocked"


# --- the table -------------------------------------------------------------------------------
def test_table_columns_and_values(tmp_path):
    ok_m = meas("tcp", "203.0.113.120:443", [conn(1, "203.0.113.120:443")], control_obs=[conn(1, "203.0.113.120:443")])
    bad = meas("tcp", "203.0.113.121:443", [conn(1, "203.0.113.121:443", "generic_timeout_error")],
               control_obs=[conn(1, "203.0.113.121:443")])
    f = tmp_path / "run.jsonl"
    f.write_text(json.dumps(ok_m) + "\n" + json.dumps(bad) + "\n" + '{"measurement_id": "torn", "pro')
    for source in ([ok_m, bad], f, [str(tmp_path)]):
        df = analysis.verdicts(source)
        assert tuple(df.columns) == COLUMNS + ("measurement_start_time",)
        assert df.measurement_start_time.iloc[0] == ok_m["measurement_start_time"]
        assert list(df.verdict) == ["ok", "blocked"]
        assert set(df.rules_version) == {RULES_VERSION}
        assert df.confidence.between(0, 1).all()
        assert df.vantage_cc.iloc[0] == "ZZ"
    assert analysis.verdicts(f).attrs["torn_lines"] == [(str(f), 3)]


def test_unknown_probe_and_probe_error_are_inconclusive():
    m = meas("nosuchprobe", "x", [], control=None)
    e = meas("tcp", "x", [], control=None, ann={"probe_error": "invalid target"})
    assert one(m).verdict == "inconclusive" and one(e).verdict == "inconclusive"


def test_register_rule_needs_replace():
    def rule(m, ctx):
        return Verdict("ok", None, 0.5, "custom")

    with pytest.raises(ValueError):
        register("openvpn", rule)
    old = RULES["openvpn"]
    try:
        register("openvpn", rule, replace=True)
        assert one(meas("openvpn", "x", [], control=None)).evidence == "custom"
    finally:
        RULES["openvpn"] = old


def test_blocked_verdict_requires_method_and_confidence():
    with pytest.raises(ValueError):
        Verdict("blocked", None, 0.9, "x")
    with pytest.raises(ValueError):
        Verdict("blocked", "tcp.reset", 0.3, "x")


def test_residual_attempt_is_discounted_when_a_retest_after_the_box_works():
    """Bystander measured inside the trigger's penalty box, then re-tested after it: ok."""
    trigger = _tls_attempt("connection_reset", mid="r1", start=0, host="trigger.example")
    first = _tls_attempt("connection_reset", mid="r2", start=5, host="bystander.example")
    retest = _tls_attempt(None, attempt=1, confirms="r2", start=300, host="bystander.example")
    df = verdicts([trigger, first, retest])
    row = df[df.measurement_id == "r2"].iloc[0]
    assert (row.verdict, row.method) == ("ok", None)
    assert "discounted as residual" in row.evidence


def test_icmp_unreachable_with_control_connecting_is_reject():
    m = meas("tcp", "203.0.113.152:443", [conn(1, "203.0.113.152:443", "host_unreachable")],
             control_obs=[conn(1, "203.0.113.152:443")])
    v = one(m)
    assert (v.verdict, v.method) == ("blocked", "tcp.reject") and "host_unreachable" in v.evidence


def test_innocuous_sni_retest_is_a_comparison_not_an_attempt_that_worked():
    first = _tls_attempt("connection_reset", mid="c1")
    inno = meas("tls", "203.0.113.80:443", [conn(1, "203.0.113.80:443"),
                                             tlsh(2, "203.0.113.80:443", "innocuous.example", parent=1)],
                control_obs=[conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "innocuous.example", parent=1)],
                attempt=1, confirms="c1", start=130,
                ann={"retest_reason": "sni comparison: innocuous innocuous.example to 203.0.113.80:443: x"})
    again = _tls_attempt("connection_reset", attempt=2, confirms="c1", start=260)
    v = one(first, [inno, again])
    assert (v.verdict, v.method) == ("blocked", "tls.sni_reset")
    assert "2 of 2 attempts" in v.evidence and "Comparisons: tls" in v.evidence and "sni comparison" in v.evidence


def test_query_to_address_without_dns_server():
    reason = {"retest_reason": "query to 203.0.113.254:53, which runs no DNS server (any answer is injected): x"}
    answered = meas("dns", "blocked.example", [dnsq(1, "blocked.example", ["198.51.100.77"],
                                                    resolver="203.0.113.254:53")],
                    control_obs=[dnsq(1, "blocked.example", ["203.0.113.101"])], ann=reason)
    v = one(answered)
    assert (v.verdict, v.method) == ("blocked", "dns.injection") and "runs no DNS server" in v.evidence
    silent = meas("dns", "fine.example", [dnsq(1, "fine.example", failure="generic_timeout_error",
                                               resolver="203.0.113.254:53")], control=None, ann=reason)
    assert one(silent).verdict == "ok"


def test_own_residual_state_keeps_the_trigger_method():
    """Attempt 0 is reset on the ClientHello; re-tests inside its own penalty box are reset at connect."""
    first = _tls_attempt("connection_reset", mid="o1")
    later = [meas("tls", "blocked.example:443", [conn(1, "203.0.113.80:443", "connection_reset")],
                  control_obs=[conn(1, "203.0.113.80:443"), tlsh(2, "203.0.113.80:443", "blocked.example", parent=1)],
                  attempt=i, confirms="o1", start=25 * i) for i in (1, 2)]
    v = one(first, later)
    assert (v.verdict, v.method) == ("blocked", "tls.sni_reset") and "3 of 3 attempts" in v.evidence


def test_residual_between_concurrent_measurements_uses_operation_times_and_every_address():
    """Trigger and bystander start together (the runner runs them concurrently); the trigger's
    handshakes on v4 and v6 are reset at 1.07 s, the bystander's HTTP request at 1.17 s is reset."""
    v4, v6 = "203.0.113.161:443", "[2001:db8:3::1:161]:443"
    trig = meas("web", "https://trigger.example/", [
        dnsq(1, "trigger.example", ["203.0.113.161"]), conn(2, v4, parent=1), conn(3, v6, parent=1),
        tlsh(4, v4, "trigger.example", "connection_reset", parent=2) | {"t0": 1.069},
        tlsh(5, v6, "trigger.example", "connection_reset", parent=3) | {"t0": 1.070}],
        control_obs=[dnsq(1, "trigger.example", ["203.0.113.161"]), conn(2, v4, parent=1),
                     tlsh(3, v4, "trigger.example", parent=2), rt(4, "https://trigger.example/", parent=3)],
        mid="cc-trigger", start=0.0001)
    bys = meas("web", "https://bystander.example/", [
        dnsq(1, "bystander.example", ["203.0.113.161"]), conn(2, v4, parent=1),
        tlsh(3, v4, "bystander.example", parent=2),
        rt(4, "https://bystander.example/", failure="connection_reset", parent=3, address=v4) | {"t0": 1.174}],
        control_obs=[dnsq(1, "bystander.example", ["203.0.113.161"]), conn(2, v4, parent=1),
                     tlsh(3, v4, "bystander.example", parent=2), rt(4, "https://bystander.example/", parent=3)],
        mid="cc-bystander", start=0.0)
    rows = {r.measurement_id: r for r in verdicts([bys, trig]).itertuples()}
    assert (rows["cc-trigger"].verdict, rows["cc-trigger"].method) == ("blocked", "tls.sni_reset")
    assert (rows["cc-bystander"].verdict, rows["cc-bystander"].method) == ("inconclusive", "residual")
    assert "cc-trigger" in rows["cc-bystander"].evidence


def test_throttled_then_a_starved_handshake_is_still_throttling():
    obs = _jitter([tput(1, "203.0.113.90:443", "slowed.example", 17_000),
                   tput(2, "203.0.113.90:443", "innocuous.example", 2_000_000)], 6)
    first = meas("throughput", "https://slowed.example/big", obs, control_obs=[], mid="th1")
    starved = meas("throughput", "https://slowed.example/big",
                   [conn(1, "203.0.113.90:443"),
                    tlsh(2, "203.0.113.90:443", "slowed.example", "generic_timeout_error", parent=1)],
                   control_obs=[conn(1, "203.0.113.90:443"), tlsh(2, "203.0.113.90:443", "slowed.example", parent=1)],
                   attempt=1, confirms="th1", start=20, ann={"retest_reason": "repeat of the real transfer: x"})
    v = one(first, [starved])
    assert (v.verdict, v.method) == ("blocked", "throttled") and "2 of 2 attempts" in v.evidence


def test_address_blocking_leaves_no_residual_state_for_other_inputs():
    a = meas("tcp", "203.0.113.190:443", [conn(1, "203.0.113.190:443", "generic_timeout_error")],
             control_obs=[conn(1, "203.0.113.190:443")], mid="bh1", start=0)
    b = meas("tls", "bridges.example:443", [conn(1, "203.0.113.190:443", "generic_timeout_error")],
             control_obs=[conn(1, "203.0.113.190:443")], mid="bh2", start=5)
    rows = {r.measurement_id: (r.verdict, r.method) for r in verdicts([a, b]).itertuples()}
    assert rows == {"bh1": ("blocked", "tcp.blackhole"), "bh2": ("blocked", "tcp.blackhole")}


def test_reference_too_fast_to_sample_still_shows_a_huge_gap():
    slow = _jitter([tput(1, "203.0.113.90:443", "slowed.example", 30_000)], 7)[0]
    fast = {"id": 2, "operation": "throughput", "parent_id": None, "t0": 0.0, "t": 0.05, "failure": None,
            "url": "https://innocuous.example/big", "address": "203.0.113.90:443", "server_name": "innocuous.example",
            "bytes": 1048576, "duration": 0.04, "samples": [[0.0, 0], [0.04, 1048576]], "rate_bps": 2.0e8}
    v = one(meas("throughput", "https://slowed.example/big", [slow, fast], control_obs=[]))
    assert (v.verdict, v.method) == ("blocked", "throttled") and "fold" in v.evidence and v.confidence < 0.8
    fast404 = dict(fast, bytes=150, rate_bps=2.0e6)
    v = one(meas("throughput", "https://slowed.example/big", [slow, fast404], control_obs=[]))
    assert v.verdict == "inconclusive"


def test_two_urls_of_one_sni_blocked_site_are_not_each_others_residual():
    a = _tls_attempt("connection_reset", mid="u1", start=0)
    b = _tls_attempt("connection_reset", mid="u2", start=2)
    b["input"] = "blocked.example:8443"  # another input, same SNI (host)
    rows = {r.measurement_id: (r.verdict, r.method) for r in verdicts([a, b]).itertuples()}
    assert rows == {"u1": ("blocked", "tls.sni_reset"), "u2": ("blocked", "tls.sni_reset")}


def test_sni_retests_of_one_address_are_keyed_by_the_name_sent():
    """Confirmation re-tests of two inputs are both ``tls`` to the same ``IP:PORT`` (different SNIs), started
    together: the trigger's handshake is reset first, the bystander's 1 ms later is residual, never blocked."""
    ep = "203.0.113.161:443"

    def retest(sni, mid, start):
        return meas("tls", ep, [conn(1, ep), tlsh(2, ep, sni, "connection_reset", parent=1) | {"t0": 0.03}],
                    control_obs=[conn(1, ep), tlsh(2, ep, sni, parent=1)], mid=mid, start=start,
                    ann={"retest_options": {"sni": sni}})

    trig, bys = retest("trigger.example.org", "k-trig", 100.0), retest("bystander.example.org", "k-bys", 100.001)
    rows = {r.measurement_id: (r.verdict, r.method) for r in verdicts([bys, trig]).itertuples()}
    assert rows == {"k-trig": ("blocked", "tls.sni_reset"), "k-bys": ("inconclusive", "residual")}
