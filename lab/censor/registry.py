"""The one place where censor behaviours are registered.

Adding a behaviour = one module in ``behaviours/`` (a ``Params`` dataclass and a
``Behaviour`` subclass) plus one line here.
"""

from __future__ import annotations

from .behaviours.base import Behaviour
from .behaviours.blockpage_injection import BlockpageInjection
from .behaviours.dns_injection import DnsInjection
from .behaviours.fet_block import FetBlock
from .behaviours.icmp_reject import IcmpReject
from .behaviours.ip_blackhole import IpBlackhole
from .behaviours.latency import Latency
from .behaviours.openvpn_fingerprint import OpenvpnFingerprint
from .behaviours.port_block import PortBlock
from .behaviours.quic_sni import QuicSni
from .behaviours.residual import Residual
from .behaviours.rst_injection import RstInjection
from .behaviours.throttle import Throttle
from .behaviours.tls_interception import TlsInterception
from .behaviours.wireguard_drop import WireguardDrop

BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (
        DnsInjection,
        IpBlackhole,
        IcmpReject,
        RstInjection,
        Residual,
        BlockpageInjection,
        TlsInterception,
        Throttle,
        Latency,
        OpenvpnFingerprint,
        WireguardDrop,
        PortBlock,
        FetBlock,
        QuicSni,
    )
}
