"""The one place where censor behaviours are registered.

Adding a behaviour = one module in ``behaviours/`` (a ``Params`` dataclass and a
``Behaviour`` subclass) plus one line here.
"""

from __future__ import annotations

from .behaviours.base import Behaviour
from .behaviours.blockpage_injection import BlockpageInjection
from .behaviours.dns_injection import DnsInjection
from .behaviours.icmp_reject import IcmpReject
from .behaviours.ip_blackhole import IpBlackhole
from .behaviours.latency import Latency
from .behaviours.residual import Residual
from .behaviours.rst_injection import RstInjection
from .behaviours.throttle import Throttle
from .behaviours.tls_interception import TlsInterception

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
    )
}
