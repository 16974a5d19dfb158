"""Lab scenarios: declarative TOML naming sites, server modes, censor behaviours and ground truth.

A scenario file (format in docs/lab.md)::

    name = "dns-injection"
    description = "one line"
    sites_from_list = "default"        # optional: a site for every host of a target list
    [[site]]      name, address (str or list), isp_address, content
    [resolver]    lie = { "NAME" = "nxdomain" | "refused" | "servfail" | "sinkhole" | IP | [IP, ...] }
    [servers]     slow_delay (s)
    [vpn]         servers = ["openvpn", "wireguard", ...]   # real VPN servers (lab/vpn_servers.py)
    [[censor]]    behaviour = "NAME", ... (passed to the censor unchanged)
    [[truth]]     target, probe, verdict ("ok" | "down" | "blocked"), method, note
    [default_truth]  probes = [...], verdict = "ok"   # truth for every site without an explicit row

Every key is checked: an unknown key is a ``ConfigError`` naming it and the
file. Sites without an ``address`` get one from the site pool (a dedicated IPv4
and IPv6 address each, so blackholing one spares the others); sites whose
registered domains match share one (``www.x.com`` and ``x.com``).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from censorscope.lab import addressing as A
from censorscope.probes.errors import ConfigError

VERDICTS = ("ok", "down", "blocked")

#: blocking methods a scenario may name as ground truth (DESIGN.md §4, as censorscope.analysis.verdicts
#: names them); ``http.blockpage:<id>`` and ``vpn.<protocol>.blocked`` take a suffix.
METHODS = frozenset({
    "dns.injection", "dns.nxdomain", "dns.bogon", "dns.refused", "dns.servfail", "dns.timeout",
    "dns.blockpage", "dns.inconsistent",
    "tcp.blackhole", "tcp.reset", "tcp.reject",
    "tls.sni_reset", "tls.sni_drop", "tls.mitm",
    "http.reset", "http.drop", "http.diff", "quic.blocked", "throttled",
    "tor.blocked",  # issue #5's name for tor blocking: the engine says vpn.tor.blocked.<sub-method>
})
METHOD_PATTERNS = (re.compile(r"^http\.blockpage:[A-Za-z0-9_.-]+$"), re.compile(r"^vpn\.[a-z0-9]+\.blocked(\.[a-z_]+)?$"))
LIE_WORDS = ("nxdomain", "refused", "servfail", "sinkhole")

_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_KEYS: dict[str, set[str]] = {
    "": {"name", "description", "sites_from_list", "site", "resolver", "servers", "censor", "truth",
         "default_truth", "vpn"},
    "site": {"name", "address", "isp_address", "content"},
    "resolver": {"lie"},
    "servers": {"slow_delay"},
    "vpn": {"servers"},
    "truth": {"target", "probe", "verdict", "method", "note"},
    "default_truth": {"probes", "verdict"},
}
URL_PROBES = ("web", "http", "throughput")
SPECIAL_ADDRESSES = {A.DOWN_V4: "down", A.RESET_V4: "reset", A.SLOW_V4: "slow"}
#: sites live on the server link (transit routes nothing else to the server namespace) ...
SERVER_LINK = (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8:3::/64"))
#: ... but never on an address another lab service owns
RESERVED = {
    A.SERVER_V4: "the server itself", A.SERVER_V6: "the server itself", "203.0.113.1": "transit",
    "2001:db8:3::1": "transit", A.RESOLVER_V4: "the ISP resolver", A.RESOLVER_V6: "the ISP resolver",
    A.PUBLIC_RESOLVER_V4: "the public resolver", A.PUBLIC_RESOLVER_V6: "the public resolver",
    A.AUTH_DNS_V4: "nsd", A.AUTH_DNS_V6: "nsd", A.SINKHOLE_V4: "the sinkhole", A.SINKHOLE_V6: "the sinkhole",
    A.NO_DNS_V4: "the no-DNS host",
    A.VPN_V4: "the VPN servers", A.VPN_V6: "the VPN servers", A.TOR_V4: "the tor relay", A.TOR_V6: "the tor relay",
}


@dataclass(frozen=True)
class Site:
    """A name the lab hosts: DNS records (nsd) and a web site on every address."""

    name: str
    addresses: tuple[str, ...]
    isp_addresses: tuple[str, ...] = ()  # what the client's resolver answers instead (CDN edge)
    content: str = ""  # page text; "" = a generated page naming the site

    @property
    def served_addresses(self) -> tuple[str, ...]:
        """Every address a client may be sent to for this site."""
        return tuple(dict.fromkeys(self.addresses + self.isp_addresses))

    @property
    def server_kind(self) -> str:
        """Who answers on the site's addresses: ``web`` (nginx), ``down``, ``reset`` or ``slow``."""
        kinds = {SPECIAL_ADDRESSES.get(a, "web") for a in self.served_addresses}
        return kinds.pop() if len(kinds) == 1 else "web"


@dataclass(frozen=True)
class Truth:
    """Ground truth for one (target, probe): what an honest verdict engine must say."""

    target: str
    probe: str
    verdict: str
    method: str | None = None
    note: str = ""

    def label(self) -> str:
        """``ok``, ``down`` or ``blocked:<method>``."""
        return f"blocked:{self.method}" if self.verdict == "blocked" else self.verdict


@dataclass(frozen=True)
class Scenario:
    """A parsed, validated scenario."""

    name: str
    description: str
    sites: tuple[Site, ...]
    lies: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> answers (words or IPs)
    slow_delay: float = 2.0
    censor: tuple[dict[str, Any], ...] = ()
    truth: tuple[Truth, ...] = ()
    source: str = ""
    vpn: tuple[str, ...] = ()  # VPN servers to run (lab/vpn_servers.py KINDS)

    @property
    def negative(self) -> bool:
        """True for a negative control: nothing in the ground truth is blocked."""
        return not any(t.verdict == "blocked" for t in self.truth)

    @property
    def behaviours(self) -> list[str]:
        """Names of the censor behaviours this scenario uses."""
        return [c["behaviour"] for c in self.censor]

    def site(self, name: str) -> Site:
        """The site called ``name``."""
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for ``lab scenarios --json``)."""
        return {
            "name": self.name, "description": self.description, "source": self.source,
            "negative_control": self.negative, "behaviours": self.behaviours,
            "censor": [dict(c) for c in self.censor],
            "sites": [{"name": s.name, "addresses": list(s.addresses), "isp_addresses": list(s.isp_addresses),
                       "server": s.server_kind} for s in self.sites],
            "resolver_lies": {k: list(v) for k, v in self.lies.items()},
            "vpn_servers": list(self.vpn),
            "truth": [{"target": t.target, "probe": t.probe, "verdict": t.verdict, "method": t.method,
                       "note": t.note} for t in self.truth],
        }


# --- loading --------------------------------------------------------------
def scenarios_dir() -> Path:
    """The folder of the scenarios shipped with censorscope."""
    return Path(str(resources.files("censorscope.lab") / "scenarios"))


def shipped() -> list[str]:
    """Names of the shipped scenarios."""
    return sorted(p.stem for p in scenarios_dir().glob("*.toml"))


def load(name: str) -> Scenario:
    """Load the shipped scenario ``name``."""
    path = scenarios_dir() / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"no scenario {name!r}; shipped: {', '.join(shipped())}")
    return load_file(path)


def load_file(path: str | Path) -> Scenario:
    """Load and validate a scenario file (shipped or external)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read scenario: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    return parse(data, str(path))


def _check_keys(table: Any, section: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{section}] must be a table")
    unknown = sorted(set(table) - _KEYS[section])
    if unknown:
        allowed = ", ".join(sorted(_KEYS[section]))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} in [{section or 'top level'}]"
                          f" (allowed: {allowed})")
    return table


def _str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, got {type(value).__name__}")
    return value


def _str_list(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a string or a list of strings")
    return value


def _lab_ip(value: str, key: str, where: str) -> str:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{where}: {key}: {value!r} is not an IP address") from None
    if not A.in_lab_ranges(str(ip)):
        raise ConfigError(f"{where}: {key}: {value} is outside the lab ranges "
                          f"({', '.join(A.LAB_PREFIXES_V4 + A.LAB_PREFIXES_V6)})")
    return str(ip)


def check_name(value: str, where: str) -> str:
    """A DNS name in lower case without a trailing dot."""
    name = value.strip().rstrip(".").lower()
    if not _NAME.match(name):
        raise ConfigError(f"{where}: {value!r} is not a valid DNS name")
    return name


def check_method(method: str, where: str) -> str:
    """A known blocking method (see ``METHODS``)."""
    if method in METHODS or any(p.match(method) for p in METHOD_PATTERNS):
        return method
    raise ConfigError(f"{where}: unknown method {method!r}; known: {', '.join(sorted(METHODS))}, "
                      "http.blockpage:<id>, vpn.<protocol>.blocked[.<sub-method>]")


def registered_domain(name: str) -> str:
    """A cheap registered-domain guess (last two labels, three under two-letter second-level
    labels such as ``bbc.co.uk``): used only to let sibling names share an address."""
    labels = name.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in ("co", "com", "org", "net", "ac", "gov"):
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def list_urls(spec: str) -> dict[str, list[str]]:
    """host -> URLs of a target list (``default`` = the shipped list), in list order."""
    from censorscope.measure.targets import iter_targets  # lab -> measure only for lists

    out: dict[str, list[str]] = {}
    for t in iter_targets([spec]):
        host = urlsplit(t.url).hostname
        if host and _NAME.match(host) and not _is_ip(host):  # IP literals need no lab DNS or vhost
            out.setdefault(host, []).append(t.url)
    return out


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def parse(data: dict[str, Any], source: str = "<memory>") -> Scenario:
    """Validate a decoded TOML document and build the ``Scenario``."""
    where = source
    _check_keys(data, "", where)
    for key in ("name", "description"):
        if key not in data:
            raise ConfigError(f"{where}: missing required key {key!r}")
    name = _str(data["name"], "name", where)
    if not re.match(r"^[a-z0-9][a-z0-9_-]*$", name):
        raise ConfigError(f"{where}: name {name!r}: use a-z, 0-9, '-' and '_'")
    description = _str(data["description"], "description", where)

    raw_sites = data.get("site", [])
    if not isinstance(raw_sites, list):
        raise ConfigError(f"{where}: site must be an array of tables ([[site]])")
    explicit: list[dict[str, Any]] = []
    for i, s in enumerate(raw_sites):
        w = f"{where}: site #{i + 1}"
        _check_keys(s, "site", w)
        if "name" not in s:
            raise ConfigError(f"{w}: missing required key 'name'")
        entry = dict(s, name=check_name(_str(s["name"], "name", w), w))
        explicit.append(entry)
    names = [e["name"] for e in explicit]
    urls: dict[str, list[str]] = {}
    if "sites_from_list" in data:
        spec = _str(data["sites_from_list"], "sites_from_list", where)
        if spec != "default" and not Path(spec).is_absolute() and Path(source).is_file():
            spec = str(Path(source).parent / spec)  # relative to the scenario file
        try:
            urls = list_urls(spec)
        except (ConfigError, OSError) as e:
            raise ConfigError(f"{where}: sites_from_list: {e}") from None
        hosts = list(urls)
        names += [h for h in hosts if h not in names]
        explicit += [{"name": h} for h in hosts if h not in {e["name"] for e in explicit}]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: site(s) declared twice: {', '.join(dupes)}")
    sites = _build_sites(explicit, where)

    lies: dict[str, tuple[str, ...]] = {}
    resolver = _check_keys(data.get("resolver", {}), "resolver", where)
    lie_table = resolver.get("lie", {})
    if not isinstance(lie_table, dict):
        raise ConfigError(f"{where}: resolver.lie must be a table of NAME = ANSWER")
    for raw_name, answer in lie_table.items():
        w = f"{where}: resolver.lie"
        lname = check_name(raw_name, w)
        answers = _str_list(answer, raw_name, w)
        if len(answers) == 1 and answers[0] in LIE_WORDS:
            lies[lname] = (answers[0],)
            continue
        out = []
        for a in answers:
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                raise ConfigError(f"{w}: {raw_name}: {a!r} is neither an IP address nor one of "
                                  f"{', '.join(LIE_WORDS)}") from None
            # bogons (0.0.0.0, 127.x) are what lying resolvers return; any other address must
            # stay inside the lab ranges (the network rule: clients will connect to it)
            if not (ip.is_unspecified or ip.is_loopback):
                _lab_ip(a, raw_name, w)
            out.append(str(ip))
        lies[lname] = tuple(out)

    servers = _check_keys(data.get("servers", {}), "servers", where)
    slow_delay = servers.get("slow_delay", 2.0)
    if not isinstance(slow_delay, int | float) or isinstance(slow_delay, bool) or not 0 <= slow_delay <= 120:
        raise ConfigError(f"{where}: servers.slow_delay must be a number of seconds in 0..120")

    censor = data.get("censor", [])
    if not isinstance(censor, list):
        raise ConfigError(f"{where}: censor must be an array of tables ([[censor]])")
    for i, c in enumerate(censor):
        if not isinstance(c, dict) or not isinstance(c.get("behaviour"), str):
            raise ConfigError(f"{where}: censor #{i + 1}: needs behaviour = \"NAME\"")
    _check_censor(censor, where)

    vpn = _parse_vpn(data, where)
    truth = _parse_truth(data, where, sites, urls)
    return Scenario(name=name, description=description, sites=tuple(sites), lies=lies,
                    slow_delay=float(slow_delay), censor=tuple(censor), truth=tuple(truth), source=source,
                    vpn=vpn)


def _parse_vpn(data: dict[str, Any], where: str) -> tuple[str, ...]:
    """``[vpn] servers``: names from ``censorscope.lab.vpn_servers.KINDS``."""
    from censorscope.lab.vpn_servers import KINDS

    table = _check_keys(data.get("vpn", {}), "vpn", where)
    names = _str_list(table.get("servers", []), "vpn.servers", where)
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ConfigError(f"{where}: vpn.servers: unknown server(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return tuple(dict.fromkeys(names))


def _check_censor(tables: list[dict[str, Any]], where: str) -> None:
    """Let the censor validate its own tables (unknown behaviours and parameters are errors)."""
    from censorscope.lab.censor.config import ConfigError as CensorConfigError
    from censorscope.lab.censor.config import load_config

    try:
        load_config({"behaviours": tables})
    except CensorConfigError as e:
        raise ConfigError(f"{where}: [[censor]]: {e}") from None


def _site_ip(value: str, key: str, where: str) -> str:
    ip = _lab_ip(value, key, where)
    if not any(ipaddress.ip_address(ip) in n for n in SERVER_LINK):
        raise ConfigError(f"{where}: {key}: {ip} is not on the server link (203.0.113.0/24, 2001:db8:3::/64)")
    if ip in RESERVED:
        raise ConfigError(f"{where}: {key}: {ip} belongs to {RESERVED[ip]}")
    return ip


def _build_sites(entries: list[dict[str, Any]], where: str) -> list[Site]:
    used = set()
    for e in entries:
        for key in ("address", "isp_address"):
            if key in e:
                for a in _str_list(e[key], key, f"{where}: site {e['name']}"):
                    used.add(_site_ip(a, key, f"{where}: site {e['name']}"))
    pool = [i for i in range(A.SITE_LAST - A.SITE_FIRST + 1) if A.site_address(i) not in used]
    by_domain: dict[str, tuple[str, ...]] = {}
    sites = []
    for e in entries:
        w = f"{where}: site {e['name']}"
        if "address" in e:
            addresses = tuple(_site_ip(a, "address", w) for a in _str_list(e["address"], "address", w))
            if not addresses:
                raise ConfigError(f"{w}: address must not be empty")
        else:
            dom = registered_domain(e["name"])
            if dom not in by_domain:
                if pool:
                    i = pool.pop(0)
                    by_domain[dom] = (A.site_address(i), A.site_address_v6(i))
                elif by_domain:  # pool exhausted: share addresses round-robin, like shared hosting
                    shared = list(dict.fromkeys(by_domain.values()))
                    by_domain[dom] = shared[len(by_domain) % len(shared)]
                else:
                    raise ConfigError(f"{where}: no site address left in the pool")
            addresses = by_domain[dom]
        isp = tuple(_site_ip(a, "isp_address", w) for a in _str_list(e.get("isp_address", []), "isp_address", w))
        content = _str(e.get("content", ""), "content", w)
        sites.append(Site(e["name"], addresses, isp, content))
    return sites


def _parse_truth(data: dict[str, Any], where: str, sites: list[Site], urls: dict[str, list[str]]) -> list[Truth]:
    """Explicit ``[[truth]]`` rows, then ``default_truth`` for every (site, probe) without one.

    With ``sites_from_list`` the default rows use the list's URLs, and a host that has
    explicit rows for a probe must have one for *each* of its list URLs (a forgotten URL
    must not silently default to ok).
    """
    from censorscope.probes import registry

    raw = data.get("truth", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: truth must be an array of tables ([[truth]])")
    out = []
    seen = set()
    for i, t in enumerate(raw):
        w = f"{where}: truth #{i + 1}"
        _check_keys(t, "truth", w)
        for key in ("target", "probe", "verdict"):
            if key not in t:
                raise ConfigError(f"{w}: missing required key {key!r}")
        out.append(_truth(t, w, registry.PROBES))
        key = (out[-1].target, out[-1].probe)
        if key in seen:
            raise ConfigError(f"{w}: ({key[0]}, {key[1]}) has two ground truths")
        seen.add(key)
    if "default_truth" not in data:
        return out
    d = _check_keys(data["default_truth"], "default_truth", f"{where}: default_truth")
    probes = _str_list(d.get("probes", []), "probes", f"{where}: default_truth")
    verdict = d.get("verdict", "ok")
    if verdict not in ("ok", "down"):
        raise ConfigError(f"{where}: default_truth.verdict must be ok or down (blocking needs a method)")
    covered = {(_host_of(t.target), t.probe) for t in out}
    for s in sites:
        for p in probes:
            targets = urls.get(s.name) if p in URL_PROBES and s.name in urls else [_default_target(s.name, p)]
            if (s.name, p) in covered:
                missing = [u for u in targets if (u, p) not in seen]
                if missing and s.name in urls:
                    raise ConfigError(f"{where}: {s.name} has explicit {p} truth but none for {', '.join(missing)}")
                continue
            for target in targets:
                out.append(_truth({"target": target, "probe": p, "verdict": verdict},
                                  f"{where}: default_truth", registry.PROBES))
    return out


def _truth(t: dict[str, Any], w: str, probes: dict[str, str]) -> Truth:
    target = _str(t["target"], "target", w)
    probe = _str(t["probe"], "probe", w)
    if probe not in probes:
        raise ConfigError(f"{w}: unknown probe {probe!r}; known: {', '.join(probes)}")
    verdict = _str(t["verdict"], "verdict", w)
    if verdict not in VERDICTS:
        raise ConfigError(f"{w}: verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    method = t.get("method")
    if verdict == "blocked":
        if method is None:
            raise ConfigError(f"{w}: a blocked verdict needs a method")
        method = check_method(_str(method, "method", w), w)
    elif method is not None:
        raise ConfigError(f"{w}: method is only for verdict = \"blocked\"")
    return Truth(target, probe, verdict, method, _str(t.get("note", ""), "note", w))


def _host_of(target: str) -> str:
    m = re.match(r"^[a-z]+://([^/:]+)", target)
    if m:
        return m.group(1)
    return target.rsplit(":", 1)[0] if target.count(":") == 1 else target


def _default_target(name: str, probe: str) -> str:
    """The target form a probe takes for site ``name`` (URL for web/http, HOST:443 for tls/tcp)."""
    if probe in URL_PROBES:
        return f"https://{name}/"
    if probe in ("tls", "tcp", "quic"):
        return f"{name}:443"
    return name
