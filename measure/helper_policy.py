"""Which addresses the control helper may contact, checked twice.

The control helper (``censorscope.measure.helper``) runs probes on request from
anyone who knows its URL (and token). It must not become an open proxy into
its own network, so it refuses every destination that is not globally
routable: private (RFC 1918, ULA), loopback, link-local, multicast, reserved,
unspecified, shared (CGNAT) and documentation ranges (192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32), also when hidden inside an
IPv4-mapped, 6to4 or Teredo IPv6 address. Operators (and the lab) widen this
with explicit ``allow`` networks.

Two checks, so that neither a lying DNS answer nor a probe that resolves a
name itself can slip through:

1. **Before** the probe runs, ``destinations()`` lists what a request will
   contact (the target's host, a pinned ``address``, a ``resolver``), names
   are resolved with the helper's own resolver and *every* address is
   checked. A refusal here means no packet is sent for the request at all.
2. **While** the probe runs, a guard checks every ``connect``/``sendto`` of
   the request's task (a context variable marks the task; sockets of other
   tasks are untouched). This catches DNS rebinding and addresses the probe
   learns itself (a ``web`` probe's resolution, redirects). The guard raises
   ``PermissionError(EACCES)``, which the probe records as the failure
   ``permission_denied``, and the helper lists the refused destinations.

The helper's own resolver is always allowed (it is often 127.0.0.53).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import errno
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from censorscope.measure.helper_vpn import VPN_PROBES, extra_destinations
from censorscope.probes.net import split_host_port

#: Website probes the helper runs (their options are plain values, clamped by name).
WEB_PROBES = ("dns", "tcp", "tls", "http", "web", "throughput")
#: Every probe the helper runs; the VPN probes take only allow-listed options (``helper_vpn``).
HELPER_PROBES = WEB_PROBES + VPN_PROBES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Not covered by ipaddress' is_private in Python 3.11 but never a valid control target.
_EXTRA_FORBIDDEN: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("100.64.0.0/10"), "shared address space (CGNAT)"),
    (ipaddress.ip_network("192.0.0.0/24"), "IETF protocol assignments"),
    (ipaddress.ip_network("198.18.0.0/15"), "benchmarking"),
)


class RefusedDestination(Exception):
    """A request names a destination the helper will not contact."""


@dataclass(frozen=True)
class AddressPolicy:
    """Refuse non-global addresses unless inside ``allow`` or equal to ``always``."""

    allow: tuple[IPNetwork, ...] = ()
    always: frozenset[str] = frozenset()

    @classmethod
    def build(cls, allow: Iterable[str] = (), always: Iterable[str] = ()) -> AddressPolicy:
        """From CIDR strings (``ValueError`` on a bad one) and always-allowed IP literals."""
        nets = tuple(ipaddress.ip_network(a, strict=False) for a in allow)
        return cls(allow=nets, always=frozenset(str(ipaddress.ip_address(a)) for a in always))

    def refusal(self, ip: str | IPAddress) -> str | None:
        """Why ``ip`` may not be contacted, or None when it may."""
        try:
            addr = ipaddress.ip_address(str(ip).split("%")[0])
        except ValueError:
            return f"not an IP address: {ip!r}"
        if str(addr) in self.always or any(addr in n for n in self.allow):
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            # ::ffff:a.b.c.d *is* a.b.c.d on the wire: judge the IPv4 address alone
            inner = self.refusal(addr.ipv4_mapped)
            return None if inner is None else f"{inner} (embedded in {addr})"
        if isinstance(addr, ipaddress.IPv6Address):
            embedded = addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
            if embedded is not None:
                inner = self.refusal(embedded)
                if inner is not None:
                    return f"{inner} (embedded in {addr})"
        for test, reason in (
            ("is_unspecified", "unspecified"), ("is_loopback", "loopback"), ("is_link_local", "link-local"),
            ("is_multicast", "multicast"), ("is_reserved", "reserved"), ("is_private", "private or documentation"),
        ):
            if getattr(addr, test):
                return f"{addr} is {reason}"
        for net, reason in _EXTRA_FORBIDDEN:
            if addr.version == net.version and addr in net:
                return f"{addr} is {reason}"
        if not addr.is_global:
            return f"{addr} is not globally routable"
        return None


# --- what a request will contact ---------------------------------------------------------

def _host_of(value: str) -> str | None:
    """The host of a URL, ``HOST:PORT``, ``[V6]:PORT``, bare IP or name."""
    if "://" in value:
        try:
            return urlsplit(value).hostname
        except ValueError:
            return None
    try:
        return split_host_port(value, 0)[0]
    except ValueError:
        return None


def destinations(probe: str, target: str, options: Any) -> list[str]:
    """Hosts (IP literals or names) that running ``probe`` on ``target`` contacts.

    ``dns`` contacts its resolver, never the queried name; the others contact
    the target's host unless an ``address`` option pins the connection. A
    ``resolver`` option of any probe (an IP or a DoH URL) is contacted too,
    and so is the ``dest`` a proxy probe (socks, httpconnect) asks its proxy for.
    """
    opts = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options or {})
    hosts: list[str] = []
    if probe != "dns":
        pinned = opts.get("address")
        hosts.append(pinned if pinned else (_host_of(target) or target))
    resolver = opts.get("resolver")
    if isinstance(resolver, str) and resolver:
        host = _host_of(resolver)
        # a keyword such as web's "system" names the helper's own resolver, not a host
        if "://" in resolver or _is_ip(host):
            hosts.append(host or resolver)
    hosts += extra_destinations(probe, target, options)
    return [h for h in hosts if h]


def _is_ip(value: str | None) -> bool:
    try:
        ipaddress.ip_address((value or "").split("%")[0])
    except ValueError:
        return False
    return True


async def resolve_all(name: str, resolver: str | None, timeout: float) -> list[str]:
    """Every A and AAAA address of ``name`` (empty when it does not resolve).

    With ``resolver`` (``IP[:PORT]``) dnspython asks it directly; without, the
    system resolver of the helper's host is used.
    """
    try:
        return [str(ipaddress.ip_address(name.split("%")[0]))]
    except ValueError:
        pass
    if resolver is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), timeout)
        except (OSError, TimeoutError):
            return []
        return sorted({str(i[4][0]) for i in infos})
    import dns.asyncresolver
    import dns.exception

    ip, port = split_host_port(resolver, 53)
    res = dns.asyncresolver.Resolver(configure=False)
    res.nameservers = [ip]
    res.port = port
    res.lifetime = timeout
    found: list[str] = []
    for qtype in ("A", "AAAA"):
        with contextlib.suppress(dns.exception.DNSException):
            found += [r.to_text() for r in await res.resolve(name, qtype, search=False)]
    return found


async def check_destinations(
    policy: AddressPolicy, hosts: Sequence[str], resolver: str | None, timeout: float
) -> list[str]:
    """Resolve and check every host; return the addresses seen. ``RefusedDestination`` on the first bad one.

    A name that does not resolve is let through: the probe will record the
    same resolution failure (data, not a risk), and the guard still checks
    whatever it contacts.
    """
    seen: list[str] = []
    for host in hosts:
        for ip in await resolve_all(host, resolver, timeout):
            reason = policy.refusal(ip)
            if reason is not None:
                shown = ip if ip == host else f"{host} -> {ip}"
                raise RefusedDestination(f"{shown}: {reason}")
            seen.append(ip)
    return seen


# --- the run-time guard ----------------------------------------------------------------------

@dataclass
class Guard:
    """The policy of one request and the destinations it refused."""

    policy: AddressPolicy
    refused: list[str] = field(default_factory=list)

    def check(self, address: object) -> None:
        if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
            return
        reason = self.policy.refusal(address[0])
        if reason is not None:
            if len(self.refused) < 32:
                self.refused.append(f"{address[0]}: {reason}")
            raise PermissionError(errno.EACCES, f"control helper refused to contact {reason}")


_ACTIVE: contextvars.ContextVar[Guard | None] = contextvars.ContextVar("censorscope_helper_guard", default=None)


def install_socket_guard() -> None:
    """Wrap ``socket.connect``/``connect_ex``/``sendto`` (once; again if someone restored the originals).

    The wrappers do nothing unless the calling task runs inside ``guarded()``.
    Installed lazily (when a helper app is created) so that it stacks on top
    of any wrapper already in place, such as the test suite's network rule.
    """
    if getattr(socket.socket.connect, "_censorscope_guard", False):
        return  # already in place (checked on the method itself, so a restored socket class is re-guarded)
    orig_connect, orig_connect_ex, orig_sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto

    def connect(self: socket.socket, address: Any) -> None:
        guard = _ACTIVE.get()
        if guard is not None and self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check(address)
        return orig_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard = _ACTIVE.get()
        if guard is not None and self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check(address)
        return orig_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        guard = _ACTIVE.get()
        if guard is not None and self.family in (socket.AF_INET, socket.AF_INET6) and args:
            guard.check(args[-1])
        return orig_sendto(self, data, *args)

    for wrapper in (connect, connect_ex, sendto):
        wrapper._censorscope_guard = True  # type: ignore[attr-defined]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign]


@contextlib.contextmanager
def guarded(policy: AddressPolicy) -> Iterator[Guard]:
    """Run the body (and tasks it creates) with every socket destination checked."""
    install_socket_guard()
    guard = Guard(policy)
    token = _ACTIVE.set(guard)
    try:
        yield guard
    finally:
        _ACTIVE.reset(token)
