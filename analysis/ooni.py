"""OONI measurements mapped onto censorscope measurements.

OONI's archival format (its data-format specs df-001 … df-009 and the
per-test specs ts-*) keeps, for web_connectivity and most circumvention and
messaging tests, the same low-level lists: ``queries`` (DNS), ``tcp_connect``,
``tls_handshakes`` and ``requests`` (HTTP; newest first). ``from_ooni`` turns
those into our observations (docs/observations.md) so the same verdict
rules apply, maps web_connectivity's ``test_keys.control`` onto our
``control`` field, and keeps OONI's own verdict (``blocking``,
``accessible``) and test-specific summary keys in ``annotations.ooni`` for
comparison. Nothing is guessed: what OONI did not record stays absent.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

#: OONI tests whose measurements censorscope imports.
SUPPORTED_TESTS = frozenset({
    "web_connectivity", "tor", "vanilla_tor", "torsf", "psiphon", "openvpn", "riseupvpn", "signal",
    "telegram", "whatsapp", "facebook_messenger",
})
#: test_keys kept verbatim (summary verdicts of each test) in annotations.ooni
SUMMARY_KEYS = frozenset({
    "blocking", "accessible", "dns_consistency", "http_experiment_failure", "control_failure",
    "dns_experiment_failure", "body_length_match", "headers_match", "status_code_match", "title_match",
    "success", "failure", "bootstrap_time", "error", "tcp_connect_success_count", "failure_step",
    "signal_backend_status", "signal_backend_failure", "telegram_http_blocking", "telegram_tcp_blocking",
    "telegram_web_status", "telegram_web_failure", "whatsapp_endpoints_status", "whatsapp_web_status",
    "registration_server_status", "facebook_tcp_blocking", "facebook_dns_blocking", "api_failure",
    "ca_cert_status", "bootstrap_failure", "dir_port_total", "dir_port_accessible", "obfs4_total",
    "obfs4_accessible", "or_port_total", "or_port_accessible", "or_port_dirauth_total",
    "or_port_dirauth_accessible", "persistent_datadir", "torsf_version",
})


def is_ooni(record: dict[str, Any]) -> bool:
    """True for an OONI measurement (or an OONI API wrapper around one)."""
    return "test_keys" in record or isinstance(record.get("raw_measurement"), str | dict)


def unwrap(record: dict[str, Any]) -> dict[str, Any]:
    """The raw OONI measurement inside an API wrapper (``raw_measurement`` as JSON text or object)."""
    raw = record.get("raw_measurement")
    if isinstance(raw, str):
        raw = json.loads(raw)
    if isinstance(raw, dict):
        inner = dict(raw)
        inner.setdefault("measurement_uid", record.get("measurement_uid"))
        return inner
    return record


def _iso(ts: str | None) -> str | None:
    """OONI's ``YYYY-MM-DD HH:MM:SS`` (UTC) as our ISO form with ``Z``."""
    if not ts:
        return None
    t = ts.strip().replace(" ", "T")
    if t.endswith("Z"):
        return t
    return (t + ".000000Z") if "." not in t else t + "Z"


def _addr(ip: str, port: int | str) -> str:
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def _obs(ids: _Ids, operation: str, src: dict[str, Any], failure: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "id": ids.next(), "operation": operation, "parent_id": None,
        "t0": float(src.get("t0") or src.get("t") or 0.0), "t": float(src.get("t") or 0.0),
        "failure": failure, **fields,
    }


def _dns(ids: _Ids, q: dict[str, Any]) -> dict[str, Any]:
    answers = []
    addresses = []
    for a in q.get("answers") or []:
        kind = a.get("answer_type")
        data = a.get("ipv4") or a.get("ipv6") or a.get("hostname") or a.get("ptr")
        answers.append({"name": q.get("hostname"), "type": kind, "ttl": a.get("ttl"), "data": data})
        if kind in ("A", "AAAA") and data:
            addresses.append(data)
    engine = q.get("engine") or "system"
    resolver = q.get("resolver_address") or ("system" if engine in ("system", "getaddrinfo") else None)
    response = None
    if q.get("failure") is None or answers:
        response = {"t": float(q.get("t") or 0.0), "source": resolver, "query_id": None,
                    "rcode": "NXDOMAIN" if q.get("failure") == "dns_nxdomain_error" else "NOERROR",
                    "flags": [], "answers": answers, "addresses": addresses, "size": None}
    return _obs(
        ids, "dns_query", q, q.get("failure"), query_name=q.get("hostname"), query_type=q.get("query_type"),
        transport={"udp": "udp", "tcp": "tcp", "doh": "doh", "dot": "dot"}.get(engine, "system"),
        resolver=resolver, query_id=None, hold_window=None, addresses=addresses,
        responses=[response] if response else [], ooni_engine=engine,
    )


def _connect(ids: _Ids, c: dict[str, Any]) -> dict[str, Any]:
    status = c.get("status") or {}
    failure = status.get("failure")
    if failure is None and status.get("success") is False:
        failure = "unknown_failure: OONI recorded no failure string"
    return _obs(ids, "connect", c, failure, address=_addr(c.get("ip"), c.get("port")), ip=c.get("ip"),
                port=c.get("port"), proto="tcp")


def _cert(entry: dict[str, Any]) -> dict[str, Any]:
    data = entry.get("data") or ""
    der = base64.b64decode(data) if entry.get("format", "base64") == "base64" and data else b""
    return {"sha256": hashlib.sha256(der).hexdigest() if der else None, "der_b64": data or None}


def _tls(ids: _Ids, t: dict[str, Any]) -> dict[str, Any]:
    failure = t.get("failure")
    verify_failures = {"ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate"}
    verification = None
    if not t.get("no_tls_verify"):
        verification = {"ok": failure is None, "failure": failure if failure in verify_failures else None,
                        "hostname_ok": None if failure else True, "detail": "as recorded by OONI"}
    return _obs(
        ids, "tls_handshake", t, None if failure in verify_failures else failure,
        address=t.get("address"), server_name=t.get("server_name"), alpn_offered=t.get("alpn"),
        tls_version=t.get("tls_version"), cipher=t.get("cipher_suite"), alpn=t.get("negotiated_protocol"),
        peer_certificates=[_cert(c) for c in t.get("peer_certificates") or []], verification=verification,
    )


def _body(resp: dict[str, Any]) -> bytes:
    body = resp.get("body")
    if isinstance(body, dict):
        return base64.b64decode(body.get("data") or "") if body.get("format") == "base64" else b""
    return (body or "").encode("utf-8", "surrogatepass") if isinstance(body, str) else b""


def _title(body: bytes) -> str | None:
    text = body[:65536].decode("utf-8", "replace")
    lo = text.lower()
    i = lo.find("<title")
    if i < 0:
        return None
    j = lo.find(">", i)
    k = lo.find("</title", j)
    return text[j + 1:k].strip() if j >= 0 and k > j else None


def _headers(resp: dict[str, Any]) -> list[list[str]]:
    if resp.get("headers_list"):
        return [[str(k), str(v)] for k, v in resp["headers_list"]]
    return [[str(k), str(v)] for k, v in (resp.get("headers") or {}).items()]


def _http(ids: _Ids, requests: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not requests:
        return None
    ordered = list(reversed(requests))  # OONI lists the newest request first
    final = ordered[-1]
    resp = final.get("response") or {}
    hops = []
    for r in ordered:
        rr = r.get("response") or {}
        hdrs = _headers(rr)
        location = next((v for k, v in hdrs if k.lower() == "location"), None)
        hops.append({"url": (r.get("request") or {}).get("url"), "status": rr.get("code"), "headers": hdrs,
                     "location": location})
    body = _body(resp)
    req = final.get("request") or {}
    return _obs(
        ids, "http_round_trip", final, final.get("failure"), url=(ordered[0].get("request") or {}).get("url"),
        method=req.get("method", "GET"), address=None, request_headers=req.get("headers"), hops=hops,
        status=resp.get("code") if resp else None, headers=_headers(resp), body_length=len(body) if resp else None,
        body_sha256=hashlib.sha256(body).hexdigest() if resp else None,
        body_truncated=bool(resp.get("body_is_truncated")), body_head=body[:4096].decode("utf-8", "replace"),
        title=_title(body),
    )


def _observations(tk: dict[str, Any]) -> list[dict[str, Any]]:
    ids = _Ids()
    out = [_dns(ids, q) for q in tk.get("queries") or []]
    out += [_connect(ids, c) for c in tk.get("tcp_connect") or []]
    out += [_tls(ids, t) for t in tk.get("tls_handshakes") or []]
    http = _http(ids, tk.get("requests") or [])
    if http:
        out.append(http)
    return out


def _control(tk: dict[str, Any]) -> dict[str, Any] | None:
    """web_connectivity's control (from OONI's test helper) in our control shape."""
    c = tk.get("control")
    if not isinstance(c, dict) or not c:
        return None
    ids = _Ids()
    obs: list[dict[str, Any]] = []
    dns = c.get("dns") or {}
    if dns:
        addrs = dns.get("addrs") or []
        obs.append({"id": ids.next(), "operation": "dns_query", "parent_id": None, "t0": 0.0, "t": 0.0,
                    "failure": dns.get("failure"), "addresses": addrs, "query_name": None,
                    "responses": [{"addresses": addrs, "answers": [], "rcode": "NOERROR"}] if addrs else []})
    for address, st in (c.get("tcp_connect") or {}).items():
        obs.append({"id": ids.next(), "operation": "connect", "parent_id": None, "t0": 0.0, "t": 0.0,
                    "failure": st.get("failure") if not st.get("status") else None, "address": address,
                    "proto": "tcp"})
    for address, st in (c.get("tls_handshake") or {}).items():
        obs.append({"id": ids.next(), "operation": "tls_handshake", "parent_id": None, "t0": 0.0, "t": 0.0,
                    "failure": st.get("failure") if not st.get("status") else None, "address": address,
                    "server_name": st.get("server_name")})
    http = c.get("http_request") or {}
    if http:
        hdrs = [[k, v] for k, v in (http.get("headers") or {}).items()]
        obs.append({"id": ids.next(), "operation": "http_round_trip", "parent_id": None, "t0": 0.0, "t": 0.0,
                    "failure": http.get("failure"), "status": http.get("status_code"), "headers": hdrs,
                    "body_length": http.get("body_length"), "title": http.get("title"), "hops": []})
    failure = tk.get("control_failure")
    return {"source": "ooni_test_helper", "failure": failure, "observations": obs}


def from_ooni(record: dict[str, Any]) -> dict[str, Any]:
    """An OONI measurement (or API wrapper) as a censorscope measurement dict."""
    m = unwrap(record)
    tk = m.get("test_keys") or {}
    test = m.get("test_name") or "unknown"
    summary = {k: tk[k] for k in SUMMARY_KEYS if k in tk}
    uid = m.get("measurement_uid") or m.get("id") or m.get("report_id")
    return {
        "measurement_id": str(uid) if uid else None,
        "campaign": None,
        "run_id": m.get("report_id"),
        "probe": "web" if test == "web_connectivity" else f"ooni.{test}",
        "probe_version": m.get("test_version"),
        "input": m.get("input") if not isinstance(m.get("input"), list) else json.dumps(m.get("input")),
        "repetition": 0,
        "attempt": 0,
        "measurement_start_time": _iso(m.get("measurement_start_time")),
        "runtime": m.get("test_runtime"),
        "vantage": {"cc": m.get("probe_cc"), "asn": m.get("probe_asn"), "network": m.get("probe_network_name"),
                    "resolver": m.get("resolver_ip")},
        "software": {"name": m.get("software_name"), "version": m.get("software_version")},
        "observations": _observations(tk),
        "control": _control(tk),
        "annotations": {"source": "ooni", "ooni": {"test_name": test, **summary}},
    }
