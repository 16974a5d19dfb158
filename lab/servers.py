"""The lab's servers, real Debian daemons in the ``server`` namespace.

========================  ==========================================================
nsd                       authoritative for the lab's own root zone, which holds every
                          site name of the scenario (so "www.example.com" resolves
                          inside the lab and nowhere else); ``AUTH_DNS_V4/V6``
unbound "isp"             the client's resolver (``RESOLVER_V4/V6``): stub to nsd,
                          lying for the names the scenario lists, CDN-edge answers
unbound "public"          the control's resolver (``PUBLIC_RESOLVER_V4/V6``): never lies
nginx                     HTTP and HTTPS virtual hosts for every site on each of its
                          addresses (lab-CA certificates with SANs), a catch-all
                          default server, and the block-page sinkhole (``SINKHOLE_V4/V6``)
misbehave (Python)        ``RESET_V4`` resets after the first client data, ``SLOW_V4``
                          answers after ``slow_delay`` seconds
(nothing)                 ``DOWN_V4`` is assigned to no host: really down
========================  ==========================================================

``Servers.apply(scenario)`` renders every configuration, adds or removes the
site addresses on the server's interface and restarts only the daemons whose
configuration changed, then waits until each one answers: switching scenarios
costs a few daemon restarts, not a new lab. The lab CA lives in
``<state>/pki/ca.pem``; lab processes trust it through ``CENSORSCOPE_EXTRA_CA``
and ``SSL_CERT_FILE`` (``lab_env``), never through the system store.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import os
import socket
import string
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from censorscope.lab import addressing as A
from censorscope.lab import pki
from censorscope.lab.scenario import Scenario, Site
from censorscope.lab.topology import Topology
from censorscope.probes.errors import LabError
from censorscope.probes.net import EXTRA_CA_ENV

#: service addresses always present on the server's interface (DOWN_V4 never is)
SERVICE_ADDRESSES = (
    A.RESOLVER_V4, A.RESOLVER_V6, A.PUBLIC_RESOLVER_V4, A.PUBLIC_RESOLVER_V6, A.AUTH_DNS_V4, A.AUTH_DNS_V6,
    A.WEB_V4, A.WEB_V6, A.SINKHOLE_V4, A.SINKHOLE_V6, A.RESET_V4, A.SLOW_V4, A.NO_DNS_V4,
)
#: addresses on the server link (anything else is not routed to the server)
SERVER_NETS = (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8:3::/64"))
BIG_FILE_SIZE = 1 << 20  # /big.bin on every site, for throughput probes
READY_TIMEOUT = 20.0
DAEMONS = ("nsd", "unbound-isp", "unbound-public", "nginx", "misbehave")


def template(name: str) -> string.Template:
    """A shipped template from lab/templates."""
    return string.Template((resources.files("censorscope.lab") / "templates" / name).read_text())


def lab_env(state: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for lab processes: trust the lab CA (and only inside the lab)."""
    env = dict(os.environ if base is None else base)
    ca = str(state / "pki" / "ca.pem")
    env[EXTRA_CA_ENV] = ca
    for var in ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        env[var] = ca
    return env


def _v6(a: str) -> bool:
    return ":" in a


def _listen(a: str, port: int) -> str:
    return f"[{a}]:{port}" if _v6(a) else f"{a}:{port}"


def on_server_link(address: str) -> bool:
    """True when ``address`` can be hosted in the server namespace."""
    ip = ipaddress.ip_address(address)
    return any(ip in n for n in SERVER_NETS)


# --- rendering (pure) -----------------------------------------------------
def zone_text(sites: tuple[Site, ...] | list[Site], serial: int) -> str:
    """The lab root zone: SOA, NS and an A/AAAA record per site address."""
    lines = [template("root.zone").substitute(serial=serial, ns_v4=A.AUTH_DNS_V4, ns_v6=A.AUTH_DNS_V6)]
    for s in sites:
        for a in s.addresses:
            lines.append(f"{s.name}. IN {'AAAA' if _v6(a) else 'A'} {a}")
    return "\n".join(lines) + "\n"


def unbound_local_zones(scenario: Scenario | None) -> str:
    """``local-zone``/``local-data`` lines of the ISP resolver: lies and CDN-edge answers."""
    if scenario is None:
        return ""
    out = []
    for s in scenario.sites:
        if s.isp_addresses and s.name not in scenario.lies:
            out.append(f'    local-zone: "{s.name}." static')
            out += [f'    local-data: "{s.name}. 60 IN {"AAAA" if _v6(a) else "A"} {a}"' for a in s.isp_addresses]
    for name, answers in sorted(scenario.lies.items()):
        if answers == ("nxdomain",):
            out.append(f'    local-zone: "{name}." always_nxdomain')
        elif answers == ("refused",):
            out.append(f'    local-zone: "{name}." always_refuse')
        else:
            addrs = (A.SINKHOLE_V4, A.SINKHOLE_V6) if answers == ("sinkhole",) else answers
            # redirect: the name and everything under it get these answers
            out.append(f'    local-zone: "{name}." redirect')
            out += [f'    local-data: "{name}. 60 IN {"AAAA" if _v6(a) else "A"} {a}"' for a in addrs]
    return "\n".join(out)


@dataclass(frozen=True)
class Paths:
    """Where one lab's server files live."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root.parent / "pki"

    def sub(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        return p


def nginx_servers(sites: list[Site], certs: dict[str, tuple[Path, Path]], www: Path,
                  default_cert: tuple[Path, Path], sinkhole_cert: tuple[Path, Path]) -> str:
    """nginx ``server`` blocks: one per web site, a catch-all per address, the sinkhole."""
    blocks = []
    addrs = sorted({a for s in sites for a in s.served_addresses})
    big = www / "big.bin"

    def listens(addresses: list[str], default: bool) -> list[str]:
        d = " default_server" if default else ""
        return [f"        listen {_listen(a, 80)}{d};\n        listen {_listen(a, 443)} ssl{d};" for a in addresses]

    if addrs:
        blocks.append("\n".join([
            "    server {  # catch-all: unknown Host/SNI on a site address",
            *listens(addrs, True),
            f"        ssl_certificate {default_cert[0]};",
            f"        ssl_certificate_key {default_cert[1]};",
            '        location / { return 404 "no such site on this server\\n"; }',
            "    }",
        ]))
    for s in sites:
        cert, key = certs[s.name]
        blocks.append("\n".join([
            f"    server {{  # {s.name}",
            *listens(list(s.served_addresses), False),
            f"        server_name {s.name};",
            f"        ssl_certificate {cert};",
            f"        ssl_certificate_key {key};",
            f"        root {www / s.name};",
            f"        location = /big.bin {{ alias {big}; default_type application/octet-stream; }}",
            "        location / { try_files $uri /index.html; }",
            "    }",
        ]))
    sink = [A.SINKHOLE_V4, A.SINKHOLE_V6]
    blocks.append("\n".join([
        "    server {  # national-style sinkhole: the block page for any Host and path",
        *listens(sink, True),
        "        server_name _;",
        f"        ssl_certificate {sinkhole_cert[0]};",
        f"        ssl_certificate_key {sinkhole_cert[1]};",
        f"        root {www / '_sinkhole'};",
        # 451 Unavailable For Legal Reasons (RFC 7725) with the block page as its body
        "        error_page 451 /index.html;",
        "        location = /index.html { internal; }",
        "        location / { return 451; }",
        "    }",
    ]))
    return "\n".join(blocks)


def site_page(site: Site) -> str:
    """The HTML page of a site."""
    return template("site.html").substitute(
        name=html.escape(site.name), content=html.escape(site.content or f"Welcome to {site.name}."))


# --- readiness probes (run inside the server namespace) -------------------
def _dns_answers(server: str, qname: str, timeout: float = 0.3) -> bool:
    import dns.message

    q = dns.message.make_query(qname, "A")
    fam = socket.AF_INET6 if _v6(server) else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q.to_wire(), (server, 53))
            data, _ = s.recvfrom(4096)
        except OSError:
            return False
    return dns.message.from_wire(data).id == q.id


def _http_get(address: str, path: str, timeout: float = 0.5) -> bytes | None:
    try:
        with socket.create_connection((address, 80), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: status\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks)


def _tcp_open(address: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


class Servers:
    """All servers of one lab; ``apply`` switches them to a scenario."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.paths = Paths(topo.dir / "servers")
        self.configs: dict[str, str] = {}
        self.addresses: set[str] = set()
        self.generation = 0
        self._ca: pki.CA | None = None
        self._leaf_key = None
        self.slow_cert: tuple[Path, Path] | None = None
        self.scenario: Scenario | None = None

    @property
    def ca_file(self) -> Path:
        """The lab CA certificate (PEM)."""
        return self.paths.pki / "ca.pem"

    # --- certificates ---------------------------------------------------
    def _ca_ready(self) -> pki.CA:
        if self._ca is None:
            if (self.paths.pki / "ca.pem").exists():
                self._ca = pki.load_ca(self.paths.pki)
            else:
                self._ca = pki.make_ca(f"censorscope lab CA ({self.topo.name})")
                pki.write_ca(self._ca, self.paths.pki)
            self._leaf_key = pki.new_key()
        return self._ca

    def cert_for(self, label: str, names: list[str]) -> tuple[Path, Path]:
        """A lab-CA leaf for ``names`` (cached on disk by label and names)."""
        d = self.paths.sub("certs")
        tag = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        cert, key = d / f"{label}-{tag}.pem", d / f"{label}-{tag}.key"
        if not cert.exists():
            ca = self._ca_ready()
            c, k = pki.make_leaf(ca, names, key=self._leaf_key)
            key.write_bytes(k)
            key.chmod(0o600)
            cert.write_bytes(c)
        return cert, key

    # --- apply a scenario ---------------------------------------------------
    def render(self, scenario: Scenario) -> dict[str, str]:
        """Every configuration file's text for ``scenario`` (and write the web roots)."""
        self._ca_ready()
        for s in scenario.sites:
            for a in s.served_addresses:
                if not on_server_link(a):
                    raise LabError(f"site {s.name}: address {a} is not on the server link "
                                   "(203.0.113.0/24, 2001:db8:3::/64)")
        www = self.paths.sub("www")
        big = www / "big.bin"
        if not big.exists():
            big.write_bytes(os.urandom(BIG_FILE_SIZE))
        sink = www / "_sinkhole"
        sink.mkdir(exist_ok=True)
        (sink / "index.html").write_text(template("blockpage.html").template)
        web_sites = [s for s in scenario.sites if s.server_kind == "web"]
        certs = {}
        for s in web_sites:
            (www / s.name).mkdir(exist_ok=True)
            (www / s.name / "index.html").write_text(site_page(s))
            certs[s.name] = self.cert_for(s.name, [s.name])
        default_cert = self.cert_for("default", ["default.lab", A.WEB_V4])
        sinkhole_cert = self.cert_for("sinkhole", ["blocked.lab", A.SINKHOLE_V4])
        slow_names = [s.name for s in scenario.sites if s.server_kind == "slow"]
        self.slow_cert = self.cert_for("slow", [*slow_names, A.SLOW_V4])

        nsd_dir, ub_isp, ub_pub, ngx = (self.paths.sub(n) for n in ("nsd", "unbound-isp", "unbound-public", "nginx"))
        self.paths.sub("nsd/xfr")
        self.paths.sub("nginx/tmp")
        zone = zone_text(scenario.sites, serial=1)
        # the zone's hash is part of every DNS config: a new zone restarts nsd *and* empties
        # the resolvers' caches (a stale cached answer would leak one scenario into the next)
        zone_tag = "# zone " + hashlib.sha256(zone.encode()).hexdigest() + "\n"
        configs = {
            "nsd": template("nsd.conf").substitute(v4=A.AUTH_DNS_V4, v6=A.AUTH_DNS_V6, dir=nsd_dir) + zone_tag,
            "unbound-isp": template("unbound.conf").substitute(
                role="ISP (client's)", v4=A.RESOLVER_V4, v6=A.RESOLVER_V6, dir=ub_isp, auth_v4=A.AUTH_DNS_V4,
                local_zones=unbound_local_zones(scenario)) + zone_tag,
            "unbound-public": template("unbound.conf").substitute(
                role="public (control's)", v4=A.PUBLIC_RESOLVER_V4, v6=A.PUBLIC_RESOLVER_V6, dir=ub_pub,
                auth_v4=A.AUTH_DNS_V4, local_zones="") + zone_tag,
            "nginx": template("nginx.conf").substitute(
                dir=ngx, status_v4=A.SERVER_V4, generation="@GENERATION@",
                servers=nginx_servers(web_sites, certs, www, default_cert, sinkhole_cert)),
            "misbehave": f"delay={scenario.slow_delay} cert={self.slow_cert[0].name}",  # restart on change
        }
        (nsd_dir / "root.zone").write_text(zone)
        return configs

    def desired_addresses(self, scenario: Scenario) -> set[str]:
        """Addresses the server's interface must carry for ``scenario``."""
        want = set(SERVICE_ADDRESSES)
        for s in scenario.sites:
            want.update(s.served_addresses)
        want.discard(A.DOWN_V4)
        return want

    def _sync_addresses(self, want: set[str]) -> None:
        have = self.addresses
        lines = []
        for a in sorted(want - have):
            lines.append(f"addr add {a}/128 dev eth0 nodad" if _v6(a) else f"addr add {a}/32 dev eth0")
        for a in sorted(have - want):
            lines.append(f"addr del {a}/{128 if _v6(a) else 32} dev eth0")
        if lines:
            self.topo.run("server", ["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", check=False)
        self.addresses = set(want)

    def apply(self, scenario: Scenario) -> list[str]:
        """Switch every server to ``scenario``; returns the daemons that were (re)started."""
        t0 = time.monotonic()
        configs = self.render(scenario)
        self._sync_addresses(self.desired_addresses(scenario))
        changed = [k for k in DAEMONS
                   if configs[k] != self.configs.get(k) or k not in self.topo.procs
                   or self.topo.procs[k].poll() is not None]
        if "nginx" in changed:
            self.generation += 1  # served at /generation: tells the new nginx from the old
        for k in changed:
            self.topo.stop(k)
        self.configs = configs
        for k in changed:
            self._start(k, scenario)
        self._wait_ready(changed)
        self.scenario = scenario
        self.topo.update_state(servers={"scenario": scenario.name, "generation": self.generation,
                                        "apply_seconds": round(time.monotonic() - t0, 3)})
        return changed

    def _start(self, key: str, scenario: Scenario) -> None:
        logs = self.paths.sub("logs")
        if key == "nsd":
            conf = self.paths.root / "nsd" / "nsd.conf"
            conf.write_text(self.configs["nsd"])
            (self.paths.root / "nsd" / "nsd.pid").unlink(missing_ok=True)
            self.topo.spawn("nsd", "server", ["nsd", "-d", "-c", str(conf)], log=logs / "nsd.out")
        elif key.startswith("unbound-"):
            conf = self.paths.root / key / "unbound.conf"
            conf.write_text(self.configs[key])
            self.topo.spawn(key, "server", ["unbound", "-d", "-c", str(conf)], log=logs / f"{key}.out")
        elif key == "nginx":
            d = self.paths.root / "nginx"
            conf = d / "nginx.conf"
            conf.write_text(self.configs["nginx"].replace("@GENERATION@", str(self.generation)))
            self.topo.spawn("nginx", "server", ["nginx", "-c", str(conf), "-p", str(d), "-e", str(d / "error.log")],
                            log=logs / "nginx.out")
        elif key == "misbehave":
            ready = self.paths.root / "misbehave.ready"
            ready.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "censorscope.lab.misbehave", "--reset", A.RESET_V4,
                    "--slow", A.SLOW_V4, "--delay", str(scenario.slow_delay),
                    "--cert", str(self.slow_cert[0]), "--key", str(self.slow_cert[1]), "--ready", str(ready)]
            self.topo.spawn("misbehave", "server", argv, log=logs / "misbehave.out")

    def _checks(self) -> dict[str, object]:
        gen = f"{self.generation}\n".encode()
        ready_file = self.paths.root / "misbehave.ready"
        return {
            "nsd": lambda: _dns_answers(A.AUTH_DNS_V4, "ns.lab"),
            "unbound-isp": lambda: _dns_answers(A.RESOLVER_V4, "localhost"),
            "unbound-public": lambda: _dns_answers(A.PUBLIC_RESOLVER_V4, "localhost"),
            "nginx": lambda: (_http_get(A.SERVER_V4, "/generation") or b"").endswith(b"\r\n\r\n" + gen),
            "misbehave": lambda: ready_file.exists() and _tcp_open(A.RESET_V4, 80),
        }

    def _wait_ready(self, keys: list[str]) -> None:
        checks = self._checks()
        pending = list(keys)

        def poll() -> list[str]:
            deadline = time.monotonic() + READY_TIMEOUT
            left = list(pending)
            while left and time.monotonic() < deadline:
                left = [k for k in left if not checks[k]()]
                for k in left:
                    p = self.topo.procs.get(k)
                    if p is not None and p.poll() is not None:
                        return [f"{k} exited with {p.returncode}"]
                if left:
                    time.sleep(0.01)
            return [f"{k} not answering after {READY_TIMEOUT:g} s" for k in left]

        problems = self.topo.call_in("server", poll)
        if problems:
            logs = self.paths.root / "logs"
            raise LabError(f"lab servers failed: {'; '.join(problems)} (logs in {logs} and {self.paths.root})")

