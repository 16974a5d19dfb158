"""Probe ``web``: DNS, TCP, TLS and HTTP for one URL, every step its own observation.

Like OONI's web_connectivity, but keeping *all* DNS evidence:

1. **resolve** the URL's host: an ``A`` and an ``AAAA`` ``dns_query`` through
   ``--resolver`` over UDP with a hold window, so that an injected answer and
   the real one are both kept (default resolver: the first nameserver of
   /etc/resolv.conf); with ``--resolver system`` (or when no resolver is
   configured at all) one ``resolve`` observation from getaddrinfo instead.
   An IP-literal host skips this step.
2. **connect** to *every* distinct address found in *any* response, forged
   ones included (``parent_id``: the DNS observation the address came from),
   all at once.
3. **tls_handshake** over every connection that opened, for https (SNI = the
   host, none for an IP literal; ``parent_id``: the connect), recording each address's certificate
   chain and its verification.
4. **http_round_trip** over the first address (in DNS order) whose connection
   (and handshake, for https) worked, on a new connection pinned to that
   address (``parent_id``: that tls_handshake or connect). No address worked:
   no HTTP step. Redirects to other hosts are resolved through the same
   resolver (their ``dns_query`` observations are recorded too).

The probe observes only; comparing with a control is the verdict engine's job.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from censorscope.probes import dns, http, tcp, tls
from censorscope.probes.net import Net, format_host_port
from censorscope.probes.observation import Observation, Recorder

NAME = "web"
VERSION = "1"
SUMMARY = "DNS (all answers kept), TCP to every address, TLS and HTTP for one URL, each step recorded."
TARGET_HELP = "URL"

#: the ``--resolver`` value that selects getaddrinfo
SYSTEM = "system"


@dataclass
class Options:
    """Options of the web probe (each becomes a CLI option)."""

    resolver: str | None = field(default=None, metadata={
        "help": "Resolver IP[:PORT] queried over UDP (every response kept), or 'system' for getaddrinfo; "
                "default: the first nameserver of /etc/resolv.conf."})
    hold_window: float = field(default=1.0, metadata={
        "help": "Seconds to keep listening after the first DNS response (injected answers come first)."})
    timeout: float = field(default=10.0, metadata={"help": "Seconds for each DNS query, connect and TLS handshake."})
    http_timeout: float = field(default=15.0, metadata={
        "help": "Seconds for the whole HTTP round trip (redirects and body)."})


def target_from_url(url: str) -> str | None:
    """Campaign input -> target: any http(s) URL is measured as itself."""
    return http.target_from_url(url)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve_dns(host: str, resolver: str, net: Net, rec: Recorder, options: Options) -> list[tuple[str, int]]:
    """A and AAAA through ``resolver``: every address of every response, with its observation id."""
    observations = await asyncio.gather(*(
        dns.query(host, qtype, resolver, transport="udp", net=net, rec=rec, hold_window=options.hold_window,
                  timeout=options.timeout)
        for qtype in ("A", "AAAA")
    ))
    found: dict[str, int] = {}
    for obs in observations:  # A first, then AAAA; responses in arrival order
        for response in obs.fields.get("responses", []):
            if response.get("question_mismatch"):
                continue  # an answer about another name is not an address of this one
            for address in response.get("addresses", []):
                if _is_ip(address):
                    found.setdefault(address, obs.id)
    return list(found.items())


async def _resolve_system(host: str, port: int, rec: Recorder, timeout: float) -> list[tuple[str, int]]:
    """getaddrinfo, recorded as one ``resolve`` observation."""
    step = rec.begin("resolve", None, query_name=host, resolver=SYSTEM)
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except Exception as exc:  # noqa: BLE001 - every network failure is data
        step.fail(exc, addresses=[])
        return []
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    obs = step.ok(addresses=addresses)
    return [(a, obs.id) for a in addresses]


async def _reach(net: Net, rec: Recorder, ip: str, port: int, parent_id: int | None, host: str,
                 https: bool, timeout: float) -> Observation | None:
    """Connect (and handshake, for https); the last observation if everything worked, else None."""
    conn, streams = await tcp.connect(net, rec, ip, port, timeout=timeout, parent_id=parent_id)
    if streams is None:
        return None
    try:
        if not https:
            return conn
        sni = None if _is_ip(host) else host  # RFC 6066: no IP literals in SNI
        hs = await tls.handshake(net, rec, streams, address=format_host_port(ip, port), server_name=sni,
                                 verify_name=host, alpn=tls.DEFAULT_ALPN, timeout=timeout, parent_id=conn.id)
        return hs if hs.failure is None else None
    finally:
        await tcp.close(streams)


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog.

    Resolution: a query's ``timeout`` plus the hold window (A and AAAA run at
    once; getaddrinfo is bounded by ``timeout``); connects and handshakes run
    at once for every address: ``timeout`` each, then the close; the HTTP
    round trip, redirects and their resolution included, is bounded by
    ``http_timeout`` as a whole, then its client closes.
    """
    host = urlsplit(target).hostname or ""
    resolve = 0.0 if _is_ip(host) else options.timeout + options.hold_window
    return resolve + 2 * options.timeout + tcp.CLOSE_WAIT + options.http_timeout + tcp.CLOSE_WAIT


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Measure ``target`` (an http(s) URL) step by step; see the module docstring."""
    url = http.check_url(target)
    tcp.check_timeout(options.timeout)
    tcp.check_timeout(options.http_timeout, "--http-timeout")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not _is_ip(host):
        host = dns.normalize_name(host)  # IDNA: what DNS, SNI and certificates carry
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    rec = Recorder(net.clock)

    resolver = options.resolver or net.resolver or dns.resolver_from_resolv_conf() or SYSTEM
    if _is_ip(host):
        addresses: list[tuple[str, int | None]] = [(str(ipaddress.ip_address(host)), None)]
    else:
        if resolver == SYSTEM:
            addresses = list(await _resolve_system(host, port, rec, options.timeout))
        else:
            addresses = list(await _resolve_dns(host, resolver, net, rec, options))

    reached = await asyncio.gather(*(
        _reach(net, rec, ip, port, parent, host, https, options.timeout) for ip, parent in addresses
    ))
    for (ip, _), last in zip(addresses, reached, strict=True):
        if last is not None:  # the first address, in DNS order, that worked
            # redirects to other hosts resolve through the same resolver (getaddrinfo for 'system')
            resolve = None if resolver == SYSTEM else http.dns_resolve(
                net, rec, resolver, timeout=options.timeout, hold_window=options.hold_window)
            await http.round_trip(net, rec, url, address=ip, resolve=resolve, timeout=options.http_timeout,
                                  parent_id=last.id)
            break
    return rec.observations
