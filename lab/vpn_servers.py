"""Real VPN and circumvention servers in the lab's ``server`` namespace, started only when a
scenario's ``[vpn] servers = [...]`` names them (docs/lab.md).

=============  ===============================================  =====================================
name           daemon                                           where (``VPN_V4``/``TOR_V4``)
=============  ===============================================  =====================================
openvpn        two ``openvpn`` servers (lab-CA PKI, no tls-auth) UDP 1194 and TCP 1195
wireguard      ``wireguard-go`` + ``wg`` (per-lab keys and       UDP 51820 (any address: v4 and v6)
               interface name ``wgcs<hash>``)
ikev2          strongSwan ``charon`` + ``swanctl`` under          UDP 500 and 4500
               ``unshare -m`` with a private tmpfs on /run
pptp           ``pptpd`` (control channel; no PPP in the kernel) TCP 1723
l2tp           ``xl2tpd`` (control channel)                      UDP 1701
shadowsocks    ``ss-server`` (chacha20-ietf-poly1305)            TCP 8388
ssh            ``sshd`` (per-lab host key, no logins)            TCP 22 (also on ``VPN_V6``)
tor            ``tor`` relay, offline (no default route in the   TCP 9001 (OR), 9030 (Dir) on TOR_V4
               namespace: it can reach nothing outside the lab)
quic           ``vpn_aux``: aioquic QUIC + TLS/TCP               UDP+TCP 443 (``quic.lab`` cert)
fet            ``vpn_aux``: TCP echo (answers every first        TCP 9999
               payload)
socks          ``microsocks``                                    TCP 1080
httpconnect    ``vpn_aux``: HTTP CONNECT proxy                    TCP 3128
sstp           ``sstpd`` (PyPI sstp-server; call setup only:      TCP 8443 (``sstp.lab`` cert)
               no PPP in the kernel, pppd is /bin/false)
=============  ===============================================  =====================================

State (configs, keys, logs, the wireguard client keys ``wireguard/client.toml``) lives in
``<lab state>/vpn/``; everything runs under the lab's process table and dies with the lab.
``VpnServers.apply`` starts what a scenario adds, stops what it drops, and waits until each
server answers (TCP connect / UDP port bound / log line).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from censorscope.lab import addressing as A
from censorscope.probes.errors import LabError

KINDS = ("openvpn", "wireguard", "ikev2", "pptp", "l2tp", "shadowsocks", "ssh", "tor", "quic", "fet", "socks",
         "httpconnect", "sstp")
SSTP_NAME = "sstp.lab"
#: names served by the one vpn_aux process
AUX = ("quic", "fet", "httpconnect")
READY_TIMEOUT = 60.0
QUIC_NAME = "quic.lab"
SS_PASSWORD = "censorscope-lab"
SS_METHOD = "chacha20-ietf-poly1305"
#: TCP on its own port: the verdict engine keys residual state by address:port, not transport, so a
#: UDP block on 1194 would make a TCP failure on 1194 look like residual censorship (inconclusive)
OPENVPN_PORTS = {"udp": 1194, "tcp": 1195}
#: the processes behind each name (topology keys)
PROCS = {"openvpn": ("vpn-openvpn-udp", "vpn-openvpn-tcp"), **{k: ("vpn-aux",) for k in AUX}}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _tcp_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.3):
            return True
    except OSError:
        return False


def _udp_bound(address: str, port: int) -> bool:
    """True when something holds UDP ``address:port`` (our bind fails with EADDRINUSE)."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def _log_has(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except OSError:
        return False


#: placeholders a scenario's target may carry (the lab makes new WireGuard keys per lab), filled in by
#: ``expand_target``: the path of the client key file (TOML: server ``public_key``, client ``private_key``)
#: and the server's public key (URL-quoted base64)
WG_CONFIG, WG_PUBKEY = "{wg_config}", "{wg_pubkey}"


def expand_target(target: str, lab_dir: Path) -> str:
    """``target`` with the lab's per-lab values in place of :data:`WG_CONFIG` / :data:`WG_PUBKEY`
    (``lab_dir``: the lab's state directory). Raises ``LabError`` when a placeholder names keys the
    lab does not have (the scenario runs no wireguard server)."""
    if WG_CONFIG not in target and WG_PUBKEY not in target:
        return target
    d = lab_dir / "vpn" / "wireguard"
    try:
        keys = json.loads((d / "client.json").read_text())
    except (OSError, ValueError):
        raise LabError(f"{target}: the lab has no wireguard keys (add \"wireguard\" to the scenario's "
                       "[vpn] servers)") from None
    return target.replace(WG_CONFIG, quote(str(d / "client.toml"), safe="/")).replace(
        WG_PUBKEY, quote(keys["public_key"], safe=""))


def targets() -> dict[str, str]:
    """The probe target of each server (what scenarios' ``[[truth]]`` rows name)."""
    v4, tor = A.VPN_V4, A.TOR_V4
    return {
        "openvpn-udp": f"openvpn://{v4}:1194?proto=udp", "openvpn-tcp": f"openvpn://{v4}:1195?proto=tcp",
        "wireguard": f"wireguard://{v4}:51820", "wireguard-lab": f"wireguard://{v4}:51820?config={WG_CONFIG}",
        "ikev2": f"ikev2://{v4}", "ikev2-nat-t": f"ikev2://{v4}:4500", "pptp": f"pptp://{v4}",
        "l2tp": f"l2tp://{v4}", "ssh": f"ssh://{v4}:22", "tor": f"tor://{tor}:9001",
        "quic": f"quic://{v4}:443?sni={QUIC_NAME}", "fet": f"fet://{v4}:9999",
        "socks": f"socks://{v4}:1080?dest={v4}:9999", "httpconnect": f"httpconnect://{v4}:3128?dest={v4}:9999",
        "sstp": f"sstp://{v4}:8443?sni={SSTP_NAME}",
    }


class VpnServers:
    """The VPN servers of one lab (``topo``: its Topology; ``cert_for``: the lab CA's leaf maker)."""

    def __init__(self, topo: Any, cert_for: Callable[[str, list[str]], tuple[Path, Path]], ca_file: Path) -> None:
        self.topo = topo
        self.cert_for = cert_for
        self.ca_file = ca_file
        self.dir = topo.dir / "vpn"
        self.running: set[str] = set()
        self.addresses = False
        self.tag = hashlib.sha256(topo.name.encode()).hexdigest()[:8]
        self.wg_if = f"wgcs{self.tag}"[:15]

    # --- public -------------------------------------------------------------
    def apply(self, wanted: tuple[str, ...] | list[str]) -> list[str]:
        """Run exactly the servers ``wanted``; returns those started now."""
        unknown = sorted(set(wanted) - set(KINDS))
        if unknown:
            raise LabError(f"unknown VPN server(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
        want = set(wanted)
        for k in sorted(self.running - want):
            self._stop(k)
        if want and not self.addresses:
            self._addresses(add=True)
        start = [k for k in KINDS if k in want and (k not in self.running or not self._alive(k))]
        self.dir.mkdir(parents=True, exist_ok=True)
        for k in start:
            self._stop(k)
            getattr(self, f"_start_{k}")()
            self.running.add(k)
        self._wait(start)
        return start

    def down(self) -> None:
        """Stop every VPN server (the lab's teardown kills them too)."""
        for k in sorted(self.running):
            self._stop(k)

    def client_info(self) -> dict[str, Any]:
        """What a client needs beyond the target: the wireguard keys (``public_key``, ``private_key``)."""
        p = self.dir / "wireguard" / "client.json"
        return json.loads(p.read_text()) if p.exists() else {}

    # --- plumbing -----------------------------------------------------------
    def _addresses(self, add: bool) -> None:
        lines = [f"addr {'add' if add else 'del'} {a}/32 dev eth0" for a in (A.VPN_V4, A.TOR_V4)]
        lines += [f"addr {'add' if add else 'del'} {a}/128 dev eth0" + (" nodad" if add else "")
                  for a in (A.VPN_V6, A.TOR_V6)]
        self.topo.run("server", ["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", check=False)
        self.addresses = add

    def _keys(self, kind: str) -> tuple[str, ...]:
        return PROCS.get(kind, (f"vpn-{kind}",))

    def _alive(self, kind: str) -> bool:
        return all(k in self.topo.procs and self.topo.procs[k].poll() is None for k in self._keys(kind))

    def _stop(self, kind: str) -> None:
        shared = kind in AUX and (set(AUX) - {kind}) & self.running
        if not shared:
            for k in self._keys(kind):
                self.topo.stop(k)
        self.running.discard(kind)
        if kind == "wireguard":
            Path(f"/var/run/wireguard/{self.wg_if}.sock").unlink(missing_ok=True)

    def _sub(self, name: str) -> Path:
        d = self.dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _spawn(self, key: str, argv: list[str], d: Path, env: dict[str, str] | None = None) -> None:
        self.topo.spawn(key, "server", argv, log=d / f"{key}.out", env=env)

    # --- the servers --------------------------------------------------------
    def _start_openvpn(self) -> None:
        d = self._sub("openvpn")
        cert, key = self.cert_for("openvpn", ["openvpn.lab", A.VPN_V4])
        for proto, net in (("udp", "192.0.2.0"), ("tcp", "192.0.2.128")):
            conf = d / f"server-{proto}.conf"
            conf.write_text("\n".join([
                "mode server", "tls-server", f"dev tun-ov{proto[0]}", "dev-type tun", "topology subnet",
                f"server {net} 255.255.255.128", f"proto {'tcp-server' if proto == 'tcp' else 'udp'}",
                f"local {A.VPN_V4}", f"port {OPENVPN_PORTS[proto]}", f"ca {self.ca_file}", f"cert {cert}", f"key {key}", "dh none",
                "verb 3", f"status {d}/status-{proto}.log", "",
            ]))
            (d / f"vpn-openvpn-{proto}.out").unlink(missing_ok=True)
            self._spawn(f"vpn-openvpn-{proto}", ["openvpn", "--config", str(conf)], d)

    def _start_wireguard(self) -> None:
        from censorscope.probes.wire import wireguard as wgwire

        d = self._sub("wireguard")
        info = d / "client.json"
        if not info.exists():
            server_priv, client_priv = os.urandom(32), os.urandom(32)
            info.write_text(json.dumps({
                "server_private_key": _b64(server_priv), "public_key": _b64(wgwire.public_key(server_priv)),
                "private_key": _b64(client_priv), "client_public_key": _b64(wgwire.public_key(client_priv)),
            }))
            (d / "client.toml").write_text(
                f'public_key = "{_b64(wgwire.public_key(server_priv))}"\nprivate_key = "{_b64(client_priv)}"\n')
        keys = json.loads(info.read_text())
        priv = d / "server.key"
        priv.write_text(keys["server_private_key"])
        priv.chmod(0o600)
        sock = Path(f"/var/run/wireguard/{self.wg_if}.sock")
        sock.unlink(missing_ok=True)
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1")
        self._spawn("vpn-wireguard", ["wireguard-go", "-f", self.wg_if], d, env=env)
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline or self.topo.procs["vpn-wireguard"].poll() is not None:
                raise LabError(f"wireguard-go did not create {sock} (log in {d})")
            time.sleep(0.05)
        self.topo.run("server", ["wg", "set", self.wg_if, "private-key", str(priv), "listen-port", "51820",
                                 "peer", keys["client_public_key"], "allowed-ips", "192.0.2.2/32"])
        self.topo.run("server", ["ip", "addr", "add", "192.0.2.1/24", "dev", self.wg_if])
        self.topo.run("server", ["ip", "link", "set", self.wg_if, "up"])

    def _start_ikev2(self) -> None:
        # The tmpfs over /run (charon's pid file path is fixed) also hides the lab state under /run,
        # so the script recreates its configs inside the tmpfs; charon logs to stderr (the .out file).
        d = self._sub("ikev2")
        conf = "/run/censorscope-ikev2"
        strongswan = ("charon {\n  load_modular = no\n"
                      f"  plugins {{ vici {{ socket = unix://{conf}/charon.vici }} }}\n"
                      "  filelog { stderr { default = 1 } }\n}\n")
        swanctl = (f"connections {{ lab {{ local_addrs = {A.VPN_V4}\n"
                   " proposals = aes128-sha256-modp2048,aes128-sha256-ecp256\n"
                   " local { auth = psk\n id = lab-ikev2 }\n remote { auth = psk }\n"
                   " children { c { esp_proposals = aes128-sha256 } } } }\n"
                   'secrets { ike-1 { secret = "censorscope-lab" } }\n')
        (d / "run.sh").write_text(
            "mount -t tmpfs tmpfs /run\n"
            f"mkdir -p {conf}\n"
            f"cat > {conf}/strongswan.conf <<'CSEOF'\n{strongswan}CSEOF\n"
            f"cat > {conf}/swanctl.conf <<'CSEOF'\n{swanctl}CSEOF\n"
            f"STRONGSWAN_CONF={conf}/strongswan.conf /usr/lib/ipsec/charon &\n"
            f"for i in $(seq 300); do [ -S {conf}/charon.vici ] && break; sleep 0.1; done\n"
            f"swanctl --load-all --uri unix://{conf}/charon.vici --file {conf}/swanctl.conf && echo CONFIG-LOADED\n"
            "wait\n")
        (d / "vpn-ikev2.out").unlink(missing_ok=True)
        self._spawn("vpn-ikev2", ["unshare", "-m", "--propagation", "private", "sh", str(d / "run.sh")], d)

    def _start_pptp(self) -> None:
        d = self._sub("pptp")
        (d / "pptpd.conf").write_text(f"option {d}/options\nlocalip 192.0.2.1\nremoteip 192.0.2.2-9\n")
        (d / "options").write_text("name pptpd\n")
        self._spawn("vpn-pptp", ["pptpd", "-f", "-c", str(d / "pptpd.conf"), "-l", A.VPN_V4, "-p",
                                 str(d / "pptpd.pid")], d)

    def _start_l2tp(self) -> None:
        d = self._sub("l2tp")
        (d / "xl2tpd.conf").write_text(
            f"[global]\nlisten-addr = {A.VPN_V4}\nport = 1701\n\n"
            "[lns default]\nip range = 192.0.2.10-192.0.2.20\nlocal ip = 192.0.2.1\n"
            "hostname = censorscope-lab-lns\nrequire authentication = no\n")
        self._spawn("vpn-l2tp", ["xl2tpd", "-D", "-c", str(d / "xl2tpd.conf"), "-p", str(d / "xl2tpd.pid"),
                                 "-C", str(d / "control")], d)

    def _start_shadowsocks(self) -> None:
        d = self._sub("shadowsocks")
        self._spawn("vpn-shadowsocks", ["ss-server", "-s", A.VPN_V4, "-p", "8388", "-k", SS_PASSWORD,
                                        "-m", SS_METHOD, "-u"], d)

    def _start_ssh(self) -> None:
        d = self._sub("ssh")
        key = d / "host_ed25519"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        (d / "sshd_config").write_text(
            f"Port 22\nListenAddress {A.VPN_V4}\nListenAddress [{A.VPN_V6}]\nHostKey {key}\nPidFile {d}/sshd.pid\n"
            "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n")
        self._spawn("vpn-ssh", [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f",
                                str(d / "sshd_config")], d)

    def _start_tor(self) -> None:
        d = self._sub("tor")
        data = d / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        (d / "torrc").write_text(
            "SocksPort 0\nAssumeReachable 1\nPublishServerDescriptor 0\nExitRelay 0\nExitPolicy reject *:*\n"
            f"ORPort {A.TOR_V4}:9001\nDirPort {A.TOR_V4}:9030\nAddress {A.TOR_V4}\n"
            f"DataDirectory {data}\nLog notice file {d}/tor.log\n")
        self._spawn("vpn-tor", ["tor", "-f", str(d / "torrc")], d)

    def _start_quic(self) -> None:
        self._start_aux()

    def _start_fet(self) -> None:
        self._start_aux()

    def _start_httpconnect(self) -> None:
        self._start_aux()

    def _start_aux(self) -> None:
        if "vpn-aux" in self.topo.procs and self.topo.procs["vpn-aux"].poll() is None:
            return
        d = self._sub("aux")
        cert, key = self.cert_for("quic", [QUIC_NAME, A.VPN_V4])
        ready = d / "ready"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "censorscope.lab.vpn_aux", "--quic", f"{A.VPN_V4}:443",
                "--quic", f"[{A.VPN_V6}]:443", "--echo", f"{A.VPN_V4}:9999", "--echo", f"[{A.VPN_V6}]:9999",
                "--connect", f"{A.VPN_V4}:3128",
                "--cert", str(cert), "--key", str(key), "--ready", str(ready)]
        self._spawn("vpn-aux", argv, d)

    def _start_sstp(self) -> None:
        d = self._sub("sstp")
        cert, key = self.cert_for("sstp", [SSTP_NAME, A.VPN_V4])
        (d / "options").write_text("")
        sstpd = Path(sys.executable).with_name("sstpd")
        if not sstpd.exists():
            raise LabError(f"{sstpd} is missing: install censorscope's test extra (sstp-server)")
        self._spawn("vpn-sstp", [str(sstpd), "-l", A.VPN_V4, "-p", "8443", "-c", str(cert), "-k", str(key),
                                 "--local", "192.0.2.1", "--remote", "192.0.2.0/24", "--pppd", "/bin/false",
                                 "--pppd-config", str(d / "options")], d)

    def _start_socks(self) -> None:
        d = self._sub("socks")
        self._spawn("vpn-socks", ["microsocks", "-i", A.VPN_V4, "-p", "1080"], d)

    # --- readiness ----------------------------------------------------------
    def _check(self, kind: str) -> Callable[[], bool]:
        v4 = A.VPN_V4
        checks: dict[str, Callable[[], bool]] = {
            "openvpn": lambda: all(_log_has(self.dir / "openvpn" / f"vpn-openvpn-{p}.out",
                                            "Initialization Sequence Completed") for p in ("udp", "tcp")),
            "wireguard": lambda: _udp_bound(v4, 51820),
            "ikev2": lambda: _log_has(self.dir / "ikev2" / "vpn-ikev2.out", "CONFIG-LOADED"),
            "pptp": lambda: _tcp_open(v4, 1723),
            "l2tp": lambda: _udp_bound(v4, 1701),
            "shadowsocks": lambda: _tcp_open(v4, 8388),
            "ssh": lambda: _tcp_open(v4, 22),
            "tor": lambda: _tcp_open(A.TOR_V4, 9001),
            "quic": lambda: (self.dir / "aux" / "ready").exists() and _udp_bound(v4, 443),
            "fet": lambda: (self.dir / "aux" / "ready").exists() and _tcp_open(v4, 9999),
            "socks": lambda: _tcp_open(v4, 1080),
            "sstp": lambda: _tcp_open(v4, 8443),
            "httpconnect": lambda: (self.dir / "aux" / "ready").exists() and _tcp_open(v4, 3128),
        }
        return checks[kind]

    def _wait(self, kinds: list[str]) -> None:
        if not kinds:
            return
        checks = {k: self._check(k) for k in kinds}

        def poll() -> list[str]:
            deadline = time.monotonic() + READY_TIMEOUT
            left = list(kinds)
            while left and time.monotonic() < deadline:
                left = [k for k in left if not checks[k]()]
                for k in left:
                    for key in self._keys(k):
                        p = self.topo.procs.get(key)
                        if p is not None and p.poll() is not None:
                            return [f"{k} ({key}) exited with {p.returncode}"]
                if left:
                    time.sleep(0.05)
            return [f"{k} not answering after {READY_TIMEOUT:g} s" for k in left]

        problems = self.topo.call_in("server", poll)
        if problems:
            raise LabError(f"lab VPN servers failed: {'; '.join(problems)} (logs in {self.dir})")
