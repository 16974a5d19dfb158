"""The lab's fixed address plan (documentation ranges only; no default routes).

::

    client ──A── censor ──B── transit ──C── server
                                 └────D── control      (uncensored vantage)

The censor is hop 1 from the client, transit hop 2, the server hop 3. Every
lab uses the same plan inside its own namespaces (names carry the lab name),
so labs run in parallel without clashing. Only 198.51.100.0/24,
203.0.113.0/24 and 2001:db8::/32 appear; 192.0.2.0/24 is reserved for VPN
tunnels inside the lab.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# Namespaces of one lab (suffixed with the lab name on the system: "cs-<lab>-client", ...)
NAMESPACES = ("client", "censor", "transit", "server", "control")


@dataclass(frozen=True)
class Link:
    """A veth link: (namespace, interface, address/prefix) on both ends."""

    a_ns: str
    a_if: str
    a_v4: str
    a_v6: str
    b_ns: str
    b_if: str
    b_v4: str
    b_v6: str


LINKS = (
    Link("client", "eth0", "198.51.100.2/28", "2001:db8:1::2/64", "censor", "cli0", "198.51.100.1/28", "2001:db8:1::1/64"),
    Link("censor", "up0", "198.51.100.17/28", "2001:db8:2::1/64", "transit", "cen0", "198.51.100.18/28", "2001:db8:2::2/64"),
    Link("transit", "srv0", "203.0.113.1/24", "2001:db8:3::1/64", "server", "eth0", "203.0.113.2/24", "2001:db8:3::2/64"),
    Link("transit", "ctl0", "198.51.100.33/28", "2001:db8:4::1/64", "control", "eth0", "198.51.100.34/28", "2001:db8:4::2/64"),
)

CLIENT_V4 = "198.51.100.2"
CLIENT_V6 = "2001:db8:1::2"
CENSOR_CLIENT_SIDE_V4 = "198.51.100.1"
TRANSIT_V4 = "198.51.100.18"
CONTROL_V4 = "198.51.100.34"
CONTROL_V6 = "2001:db8:4::2"

# Server-side service addresses (all on the server namespace's eth0).
SERVER_V4 = "203.0.113.2"
SERVER_V6 = "2001:db8:3::2"
RESOLVER_V4 = "203.0.113.10"       # unbound: the client's "ISP resolver"
RESOLVER_V6 = "2001:db8:3::10"
PUBLIC_RESOLVER_V4 = "203.0.113.11"  # unbound, never lies: the control's (uncensored) resolver
PUBLIC_RESOLVER_V6 = "2001:db8:3::11"
AUTH_DNS_V4 = "203.0.113.53"       # nsd: authoritative for the lab zones
AUTH_DNS_V6 = "2001:db8:3::53"
WEB_V4 = "203.0.113.80"            # nginx: shared virtual hosts
WEB_V6 = "2001:db8:3::80"
SINKHOLE_V4 = "203.0.113.250"      # national-style block page server
SINKHOLE_V6 = "2001:db8:3::250"
DOWN_V4 = "203.0.113.251"          # assigned to nothing: a server that is really down
RESET_V4 = "203.0.113.252"         # a server that really resets connections
SLOW_V4 = "203.0.113.253"          # a server that answers slowly
NO_DNS_V4 = "203.0.113.254"        # hosts no DNS server (for injection-on-any-address tests)
VPN_V4 = "203.0.113.40"            # VPN/circumvention servers (lab/vpn_servers.py), when a scenario asks
VPN_V6 = "2001:db8:3::40"
TOR_V4 = "203.0.113.41"            # the offline tor relay (its own address, so blackholing it spares the rest)
TOR_V6 = "2001:db8:3::41"

# Per-site addresses (the demo gives each site its own, so blackholing one spares the rest).
SITE_POOL_V4 = ipaddress.ip_network("203.0.113.0/24")
SITE_FIRST, SITE_LAST = 100, 199    # 203.0.113.100 - 203.0.113.199

# Addresses a forging censor may hand out: inside the lab ranges, hosting nothing.
FORGED_POOL_V4 = tuple(f"198.51.100.{i}" for i in range(200, 216))
FORGED_POOL_V6 = tuple(f"2001:db8:dead::{i:x}" for i in range(1, 9))

# Where forged answers lead: routed to a blackhole at transit, so connects time out.
FORGED_PREFIX_V4 = "198.51.100.192/27"
FORGED_PREFIX_V6 = "2001:db8:dead::/48"

# Prefixes routed inside the lab (no default route anywhere).
LAB_PREFIXES_V4 = ("198.51.100.0/24", "203.0.113.0/24")
LAB_PREFIXES_V6 = ("2001:db8::/32",)


def site_address(index: int) -> str:
    """The dedicated IPv4 address of site number ``index`` (0-based) in the demo."""
    if not 0 <= index <= SITE_LAST - SITE_FIRST:
        raise ValueError(f"site index {index} outside the pool")
    return f"203.0.113.{SITE_FIRST + index}"


def site_address_v6(index: int) -> str:
    """The dedicated IPv6 address of site number ``index`` (same index range as ``site_address``)."""
    site_address(index)  # range check
    return f"2001:db8:3::1:{SITE_FIRST + index}"


def in_lab_ranges(address: str) -> bool:
    """True when ``address`` lies in the lab's documentation ranges."""
    ip = ipaddress.ip_address(address)
    nets = LAB_PREFIXES_V4 + LAB_PREFIXES_V6
    return any(ip in ipaddress.ip_network(n) for n in nets)
