"""TLS interception with a forged certificate from the censor's CA (Kazakhstan 2019-2020 style).

TCP connections to ``addresses``:``port`` are redirected (nat PREROUTING,
REDIRECT) to a transparent proxy in the censor's namespace (``tls_proxy.py``).
For a listed SNI the proxy terminates TLS with a per-SNI certificate signed by
the censor CA (``ca.py``; stored in ``ca_dir`` or ``<state_dir>/censor-ca``) and
relays plaintext over its own TLS connection to the real server; any other SNI
is spliced to the real server untouched. The proxy is a TCP endpoint, so it
always sees the whole ClientHello (it reassembles by construction). Flows to
these addresses and port no longer cross the FORWARD path, so other TCP
behaviours do not see them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..ca import CensorCA
from ..matching import DomainMatcher
from ..tls_proxy import TransparentTlsProxy
from .base import Behaviour, Context, Rule, family_of
from .ip_blackhole import normalise

PROXY_BASE_PORT = 14400


@dataclass(frozen=True)
class Params:
    """``sni`` patterns to intercept on connections to ``addresses`` (server addresses) and ``port``."""

    sni: tuple[str, ...]
    addresses: tuple[str, ...]
    port: int = 443
    ca_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.sni or not self.addresses:
            raise ValueError("sni and addresses must not be empty")
        for a in self.addresses:
            ipaddress.ip_address(a)
        if not 1 <= self.port <= 65535:
            raise ValueError("port outside 1-65535")


class TlsInterception(Behaviour):
    """Redirect TLS to a local man-in-the-middle proxy."""

    name = "tls_interception"
    Params = Params

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.addresses = normalise(params.addresses)
        self.matcher = DomainMatcher(params.sni)
        self.proxy_port = PROXY_BASE_PORT + ctx.index
        self.ca_dir = Path(params.ca_dir) if params.ca_dir else ctx.state_dir / "censor-ca"
        self.proxy: TransparentTlsProxy | None = None

    def kernel_rules(self) -> list[Rule]:
        """REDIRECT the affected connections to the proxy."""
        return [
            Rule("nat", ("-p", "tcp", "-d", a, "--dport", str(self.params.port), "-j", "REDIRECT",
                         "--to-ports", str(self.proxy_port)), family_of(a))
            for a in sorted(self.addresses)
        ]

    def start(self) -> None:
        """Create or load the CA and start the proxy."""
        ca = CensorCA(self.ca_dir)

        def log(flow: dict[str, object], action: str, details: dict[str, object]) -> None:
            self.ctx.log(self.name, flow, action, details)

        self.proxy = TransparentTlsProxy(self.proxy_port, ca, self.matcher.match, log)
        self.proxy.start()
        self.ctx.log(self.name, {}, "ca_ready", {"ca_cert": str(ca.cert_path), "proxy_port": self.proxy_port})

    def stop(self) -> None:
        """Stop the proxy."""
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
