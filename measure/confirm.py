"""Confirmation re-tests: the runner's ``Confirmer``.

One failure is never a verdict. When a first measurement *looks* blocked (a
cheap local look at its observations and its control), this module asks the
runner for re-tests chosen by technique; the runner stores each one with
``attempt`` > 0 and ``annotations.confirms`` (the first measurement's id) and
``annotations.retest_reason``, and the verdict engine reads them all.

What looks blocked (``symptoms``):

* DNS: two or more responses to one query (on-path injection races the real
  answer), a bogon answer (private, loopback, unspecified...), or an error /
  no answer while the control resolved the name (not when the control's query of
  the same type failed the same way: both AAAA empty is a name without IPv6).
* TCP: reset, timeout, refused or unreachable, unless the control failed the
  same way (then the server is down, and there is nothing to confirm).
* TLS: reset, EOF or timeout in the handshake; a certificate that does not
  verify while the control's does (interception).
* HTTP: reset, EOF, timeout or a certificate failure; a status that differs
  from the control's.
* throughput: a rate below ``slow_ratio`` of the control's, or any rate when
  there is no control (a rate alone can never be judged).

How it is confirmed (``retests``), following the censor's known behaviour:

* **Probabilistic triggers** are repeated: the GFW's HTTP keyword filter
  resets only ~75 % of triggering requests (Rambert et al., "Chinese Wall or
  Swiss Cheese?", WWW 2021), so ``attempts`` repeats make a miss unlikely
  (0.25^3 ≈ 1.6 %).
* **Residual censorship**: after a trigger the GFW blocks the (client, server,
  port) triple for ~90 s (HTTP; same paper) and 120-180 s (ESNI; GFW Report
  2020), so re-tests to the same server and port wait ``spacing`` seconds
  (default 120). Repeats run one after another, each ``spacing`` after the
  previous one. (Another port would also dodge the penalty box, but only a
  port known to serve the same site helps; none is assumed.)
* **SNI filtering**: the same address is tried with an innocuous SNI
  (``innocuous_sni``) as a ``tls`` re-test, then with the real SNI again: an
  innocuous handshake that works where the real one fails isolates the name.
* **DNS**: the query is repeated (injection is usually deterministic, so a
  short gap suffices), and, when ``no_dns_server`` names an address on the
  far side of the censor that runs no DNS server, the query is also sent
  there: any answer from it can only be injected (GFWatch's method; Hoang et
  al., USENIX Security 2021).
* **Throughput**: the same download with an innocuous SNI to the same address
  gives the same-path reference ``analysis.throughput_stats`` needs, plus a
  repeat of the real one.

Re-tests themselves are never re-confirmed (the runner asks only about first
attempts).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from censorscope.measure.runner import Retest
from censorscope.probes.errors import ConfigError
from censorscope.probes.net import format_host_port, split_host_port

#: Failures a censor commonly causes (as opposed to, say, a 404).
CENSOR_LIKE = frozenset({
    "connection_reset", "generic_timeout_error", "eof_error", "connection_refused", "host_unreachable",
    "network_unreachable", "connection_aborted", "broken_pipe",
})
TLS_CERT = frozenset({"ssl_invalid_hostname", "ssl_unknown_authority", "ssl_invalid_certificate"})
DNS_ERRORS = frozenset({
    "dns_nxdomain_error", "dns_servfail_error", "dns_refused_error", "dns_no_answer", "dns_server_misbehaving",
    "generic_timeout_error", "connection_refused",
})
#: Longest gap between DNS re-queries (no residual state is known for DNS injection).
DNS_GAP = 1.0
MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class ConfirmPolicy:
    """The ``[confirm]`` table of a campaign file.

    ``attempts``: repeats of a measurement that looks blocked (probabilistic
    triggers); ``spacing``: seconds between re-tests to the same server and
    port (residual censorship); ``innocuous_sni``: the name for SNI
    comparisons (choose one that is served and not censored where you measure);
    ``no_dns_server``: ``IP[:PORT]`` beyond the censor that runs no DNS server,
    or None; ``slow_ratio``: a throughput below this fraction of the control's
    looks throttled.
    """

    enabled: bool = True
    attempts: int = 3
    spacing: float = 120.0
    innocuous_sni: str = "example.com"
    no_dns_server: str | None = None
    slow_ratio: float = 0.5

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str = "[confirm]") -> ConfirmPolicy:
        """Check a TOML table (every key known, every value sensible); ``ConfigError`` otherwise."""
        known = {f.name for f in fields(cls)}
        unknown = set(table) - known
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(known))})")
        p = cls(**table)
        checks = [
            (isinstance(p.enabled, bool), "enabled must be true or false"),
            (isinstance(p.attempts, int) and not isinstance(p.attempts, bool) and 1 <= p.attempts <= MAX_ATTEMPTS,
             f"attempts must be an integer from 1 to {MAX_ATTEMPTS}"),
            (isinstance(p.spacing, int | float) and not isinstance(p.spacing, bool) and p.spacing >= 0,
             "spacing must be a number of seconds >= 0"),
            (isinstance(p.innocuous_sni, str) and "." in p.innocuous_sni and " " not in p.innocuous_sni,
             "innocuous_sni must be a host name"),
            (isinstance(p.slow_ratio, int | float) and 0 < p.slow_ratio < 1, "slow_ratio must be between 0 and 1"),
        ]
        if p.no_dns_server is not None:
            checks.append((_is_endpoint(p.no_dns_server), "no_dns_server must be IP[:PORT]"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{where}: {message}")
        return p


def _is_endpoint(value: Any) -> bool:
    try:
        ipaddress.ip_address(split_host_port(str(value), 53)[0])
    except ValueError:
        return False
    return True


# --- what looks blocked -------------------------------------------------------------------------

def _ops(observations: list[dict[str, Any]] | None, operation: str) -> list[dict[str, Any]]:
    return [o for o in observations or [] if o.get("operation") == operation]


def _control_obs(measurement: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The control's observations when the control is usable, else None."""
    control = measurement.get("control")
    if not isinstance(control, dict) or control.get("failure") is not None:
        return None
    return control.get("observations") or []


#: Answers no public name should resolve to (resolver lying: 0.0.0.0, 127.x, Iran's 10.10.34.x).
#: Documentation ranges are deliberately absent: the lab serves its sites from them.
BOGONS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
))


def _bogon(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr.version == n.version and addr in n for n in BOGONS)


def _dns_symptoms(obs: list[dict[str, Any]], control: list[dict[str, Any]] | None) -> list[str]:
    found = []
    queries = _ops(obs, "dns_query")
    for q in queries:
        if len(q.get("responses") or []) >= 2:
            found.append(f"dns: {len(q['responses'])} responses to one {q.get('query_type', '')} query")
        if any(_bogon(a) for a in q.get("addresses") or []):
            found.append(f"dns: bogon answer {q['addresses']}")
    control_ok = control is not None and any(
        c.get("failure") is None and c.get("addresses") for c in _ops(control, "dns_query") + _ops(control, "resolve"))
    for q in queries + _ops(obs, "resolve"):
        if q.get("failure") in DNS_ERRORS and control_ok and not _control_failed_alike(q, control):
            found.append(f"dns: {q['failure']} while the control resolved the name")
    return found


def _control_failed_alike(q: dict[str, Any], control: list[dict[str, Any]] | None) -> bool:
    """Did the control's query of the same type fail the same way (e.g. both AAAA ``dns_no_answer``: a
    name with no IPv6 address)? Then ``q``'s failure is the name's, not a symptom."""
    qtype = q.get("query_type")
    return qtype is not None and any(c.get("query_type") == qtype and c.get("failure") == q.get("failure")
                                     for c in _ops(control, "dns_query"))


def _same_failure_in_control(operation: str, failure: str, control: list[dict[str, Any]] | None) -> bool:
    return control is not None and any(c.get("failure") == failure for c in _ops(control, operation))


def _tcp_tls_http_symptoms(obs: list[dict[str, Any]], control: list[dict[str, Any]] | None) -> list[str]:
    found = []
    connects = _ops(obs, "connect")
    ok_connects = [c for c in connects if c.get("failure") is None]
    for c in connects:
        f = c.get("failure")
        # one address failing among several that work is a dead address, not a block of the site
        if f in CENSOR_LIKE and not ok_connects and not _same_failure_in_control("connect", f, control):
            found.append(f"connect: {f}")
    control_verified = control is not None and any(
        (t.get("verification") or {}).get("ok") for t in _ops(control, "tls_handshake"))
    for t in _ops(obs, "tls_handshake"):
        f = t.get("failure")
        if f in CENSOR_LIKE | {"ssl_failed_handshake"} and not _same_failure_in_control("tls_handshake", f, control):
            found.append(f"tls_handshake: {f}")
        verification = t.get("verification") or {}
        if f is None and verification.get("ok") is False and control_verified:
            found.append(f"tls_handshake: certificate does not verify ({verification.get('failure')}) "
                         "while the control's does")
    control_status = {h.get("status") for h in _ops(control, "http_round_trip") if h.get("failure") is None}
    for h in _ops(obs, "http_round_trip"):
        f = h.get("failure")
        if f in CENSOR_LIKE | TLS_CERT and not _same_failure_in_control("http_round_trip", f, control):
            found.append(f"http_round_trip: {f}")
        elif f is None and control_status and h.get("status") not in control_status:
            found.append(f"http_round_trip: status {h.get('status')} vs the control's {sorted(control_status)}")
    return found


def _throughput_symptoms(obs: list[dict[str, Any]], control: list[dict[str, Any]] | None, ratio: float) -> list[str]:
    found = []
    for t in _ops(obs, "throughput"):
        if t.get("failure") is not None:
            if not _same_failure_in_control("throughput", t["failure"], control):
                found.append(f"throughput: {t['failure']}")
            continue
        rate = t.get("rate_bps")
        ctl_rates = [c.get("rate_bps") for c in _ops(control, "throughput") if c.get("rate_bps")]
        if not ctl_rates:
            found.append("throughput: no control rate to compare with, a same-path reference is needed")
        elif rate is not None and rate < ratio * max(ctl_rates):
            found.append(f"throughput: {rate:.0f} bit/s, below {ratio} x the control's {max(ctl_rates):.0f}")
    return found


def symptoms(measurement: dict[str, Any], slow_ratio: float = 0.5) -> list[str]:
    """Why ``measurement`` looks blocked (empty: it does not). Cheap, local, never a verdict."""
    obs = measurement.get("observations") or []
    control = _control_obs(measurement)
    return (_dns_symptoms(obs, control) + _tcp_tls_http_symptoms(obs, control)
            + _throughput_symptoms(obs, control, slow_ratio))


# --- how to confirm --------------------------------------------------------------------------------

def _endpoint(obs: list[dict[str, Any]], url: str | None) -> str | None:
    """``IP:PORT`` the measurement reached or tried: a TLS/HTTP address, else the first connect."""
    for op in ("tls_handshake", "http_round_trip", "throughput"):
        for o in _ops(obs, op):
            if o.get("address"):
                return str(o["address"])
    for c in _ops(obs, "connect"):
        if c.get("ip") and c.get("port"):
            return format_host_port(c["ip"], int(c["port"]))
    if url:
        parts = urlsplit(url)
        try:
            if parts.hostname:
                ipaddress.ip_address(parts.hostname)
                return format_host_port(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        except ValueError:
            return None
    return None


def _real_sni(measurement: dict[str, Any], obs: list[dict[str, Any]]) -> str | None:
    for t in _ops(obs, "tls_handshake") + _ops(obs, "throughput"):
        if t.get("server_name"):
            return str(t["server_name"])
    host = urlsplit(measurement.get("input") or "").hostname if "://" in (measurement.get("input") or "") else None
    try:
        ipaddress.ip_address(host or "")
        return None
    except ValueError:
        return host


class Confirmer:
    """Implements the runner's ``Confirmer`` with a ``ConfirmPolicy``."""

    def __init__(self, policy: ConfirmPolicy | None = None) -> None:
        self.policy = policy or ConfirmPolicy()

    def retests(self, measurement: dict[str, Any]) -> list[Retest]:
        """Re-tests for a first measurement that looks blocked (none otherwise)."""
        p = self.policy
        if not p.enabled or measurement.get("attempt", 0) != 0:
            return []
        found = symptoms(measurement, p.slow_ratio)
        if not found:
            return []
        why = "; ".join(found)
        probe, target = measurement["probe"], measurement["input"]
        obs = measurement.get("observations") or []
        if probe == "dns":
            return self._dns(target, why)
        if probe == "throughput":
            return self._throughput(measurement, obs, why)
        out = [Retest(probe, target, delay=p.spacing, reason=f"repeat {i + 1}/{p.attempts} (probabilistic "
                      f"trigger; spaced past residual blocking): {why}") for i in range(p.attempts)]
        tls_trouble = any(s.startswith(("tls_handshake", "http_round_trip: ssl")) for s in found) or (
            probe in ("http", "web") and target.startswith("https://") and any(
                s.startswith(("http_round_trip", "connect")) for s in found))
        host = urlsplit(target).hostname if "://" in target else None
        if p.no_dns_server and host and any(s.startswith("dns") for s in found):
            out.append(Retest("dns", host, {"resolver": p.no_dns_server, "transport": "udp"},
                              delay=min(DNS_GAP, p.spacing), reason=f"query to {p.no_dns_server}, which runs "
                              f"no DNS server (any answer is injected): {why}"))
        sni = _real_sni(measurement, obs)
        endpoint = _endpoint(obs, target if "://" in target else None) if probe != "tls" else target
        if tls_trouble and endpoint and sni and sni != p.innocuous_sni:
            out += [
                Retest("tls", endpoint, {"sni": p.innocuous_sni}, delay=p.spacing,
                       reason=f"sni comparison: innocuous {p.innocuous_sni} to {endpoint}: {why}"),
                Retest("tls", endpoint, {"sni": sni}, delay=p.spacing,
                       reason=f"sni comparison: real {sni} to {endpoint} again: {why}"),
            ]
        return out

    def _dns(self, target: str, why: str) -> list[Retest]:
        p = self.policy
        gap = min(DNS_GAP, p.spacing)
        out = [Retest("dns", target, delay=gap, reason=f"repeat {i + 1}/{p.attempts}: {why}")
               for i in range(p.attempts)]
        if p.no_dns_server:
            out.append(Retest("dns", target, {"resolver": p.no_dns_server, "transport": "udp"}, delay=gap,
                              reason=f"query to {p.no_dns_server}, which runs no DNS server (any answer is "
                                     f"injected): {why}"))
        return out

    def _throughput(self, measurement: dict[str, Any], obs: list[dict[str, Any]], why: str) -> list[Retest]:
        p = self.policy
        target = measurement["input"]
        endpoint = _endpoint(obs, target)
        out: list[Retest] = []
        try:
            ip = split_host_port(endpoint)[0] if endpoint else None
        except ValueError:  # a malformed stored address: no reference rather than a crashed run
            ip = None
        if target.startswith("https://") and ip:
            out.append(Retest("throughput", target, {"sni": p.innocuous_sni, "address": ip}, delay=p.spacing,
                              reason=f"same-path reference: innocuous SNI {p.innocuous_sni} to {ip}: {why}"))
        out.append(Retest("throughput", target, delay=p.spacing, reason=f"repeat of the real transfer: {why}"))
        return out


def make_confirmer(table: dict[str, Any] | None) -> Confirmer | None:
    """The Confirmer for a campaign's ``[confirm]`` table; None when absent or disabled."""
    if table is None:
        return None
    policy = ConfirmPolicy.from_table(table)
    return Confirmer(policy) if policy.enabled else None
