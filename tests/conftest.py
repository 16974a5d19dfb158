"""Test-wide safety: tests may only talk to loopback and the lab's documentation ranges.

Every socket connect/sendto in the test process is checked against the
allowed networks, and the host's system resolver is refused (only literal
addresses and ``localhost`` may be looked up). A test that breaks the network
rule fails instead of sending a packet.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

ALLOWED_NETS = [
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "::1/128", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "0.0.0.0/32", "::/128")
]


class NetworkRuleViolation(AssertionError):
    """A test tried to reach an address outside loopback and the lab ranges."""


def _check(address: object) -> None:
    if not isinstance(address, tuple) or not address:
        return  # AF_UNIX, netlink, ...
    host = address[0]
    if not isinstance(host, str):
        return
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        raise NetworkRuleViolation(f"test tried to use a name, not an address: {host!r}") from None
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if not any(ip in n for n in ALLOWED_NETS):
        raise NetworkRuleViolation(f"test tried to reach {ip}, outside loopback and the lab ranges")


_orig_connect = socket.socket.connect
_orig_connect_ex = socket.socket.connect_ex
_orig_sendto = socket.socket.sendto
_orig_getaddrinfo = socket.getaddrinfo


def _connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _orig_connect(self, address)


def _connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _orig_connect_ex(self, address)


def _sendto(self: socket.socket, data: bytes, *args: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(args[-1])
    return _orig_sendto(self, data, *args)


def _getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
    if isinstance(host, bytes):
        host = host.decode()
    if host is not None and host != "localhost":
        try:
            ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            raise NetworkRuleViolation(f"test tried to use the system resolver for {host!r}") from None
    return _orig_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _network_rule() -> object:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _sendto  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
    yield
    socket.socket.connect = _orig_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _orig_connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _orig_sendto  # type: ignore[method-assign]
    socket.getaddrinfo = _orig_getaddrinfo  # type: ignore[assignment]
