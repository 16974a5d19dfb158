"""On-path DNS injection: forged answers race the real one (GFW-style).

Every UDP/53 query crossing the censor is inspected, whatever its destination
(so a query to an address that runs no DNS server is answered too, the
GFWatch test; Hoang et al., USENIX Security 2021). For a listed name, each
configured injector (1-3, with distinct fingerprints: "Triplet Censors",
FOCI 2020) sends a forged response toward the client *before* the query is
let through, so the client sees the forged answers first and the real one
after. A and AAAA queries get an address from the forged pools (each name
maps to a stable address per injector); other query types are let through
unanswered and logged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from ...addressing import FORGED_POOL_V4, FORGED_POOL_V6, in_lab_ranges
from ..actions import Action, Inject, Log
from ..dns_message import CLASS_IN, QTYPE_A, QTYPE_AAAA, forged_response, parse_query
from ..first_bytes import Seen
from ..forge import Fingerprint, udp_packet
from ..matching import DomainMatcher
from .base import Behaviour, Context, Rule


@dataclass(frozen=True)
class Injector:
    """One injecting device: IP TTL (or "copy" the query's), IP-ID, DNS header flags (null = QR|RA, RD copied)."""

    ttl: int | Literal["copy"] = 64
    ip_id: int | Literal["random"] = "random"
    dns_flags: int | None = None

    def __post_init__(self) -> None:
        if self.ttl != "copy" and not 1 <= int(self.ttl) <= 255:
            raise ValueError(f"injector ttl {self.ttl} outside 1-255")
        if self.dns_flags is not None and not 0x8000 <= self.dns_flags <= 0xFFFF:
            raise ValueError("injector dns_flags must be a 16-bit value with QR (0x8000) set")


@dataclass(frozen=True)
class Params:
    """``names``: domain patterns (a name covers its subdomains; ``*`` globs)."""

    names: tuple[str, ...]
    injectors: tuple[Injector, ...] = (Injector(),)
    pool_v4: tuple[str, ...] = FORGED_POOL_V4
    pool_v6: tuple[str, ...] = FORGED_POOL_V6
    answer_ttl: int = 300

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("names must list at least one pattern")
        if not 1 <= len(self.injectors) <= 3:
            raise ValueError("injectors: between 1 and 3 injectors")
        for pool, fam in ((self.pool_v4, "."), (self.pool_v6, ":")):
            if not pool:
                raise ValueError("forged address pools must not be empty")
            for a in pool:
                if fam not in a or not in_lab_ranges(a):
                    raise ValueError(f"forged address {a} is not a lab address of the pool's family")
        if not 0 <= self.answer_ttl < 2**31:
            raise ValueError("answer_ttl out of range")


class DnsInjection(Behaviour):
    """Forge answers for listed names from 1-3 on-path injectors."""

    name = "dns_injection"
    Params = Params

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.matcher = DomainMatcher(params.names)

    def queue_rules(self) -> list[Rule]:
        """Every UDP/53 query, both families."""
        return [Rule("filter", ("-p", "udp", "--dport", "53"))]

    def forged_address(self, qname: str, qtype: int, injector: int) -> str:
        """The pool address injector number ``injector`` gives ``qname`` (stable per name)."""
        pool = self.params.pool_v4 if qtype == QTYPE_A else self.params.pool_v6
        return pool[zlib.crc32(f"{injector}:{qname}".encode()) % len(pool)]

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Inject forged responses for listed names; never drop the query."""
        pkt = seen.pkt
        if not pkt.is_udp or pkt.dport != 53:
            return []
        q = parse_query(pkt.payload)
        if q is None or q.qclass != CLASS_IN:
            return []
        pattern = self.matcher.match(q.qname)
        if pattern is None:
            return []
        if q.qtype not in (QTYPE_A, QTYPE_AAAA):
            return [Log("dns_not_forged", {"qname": q.qname, "qtype": q.qtype, "match": pattern})]
        out: list[Action] = []
        answers = []
        for i, inj in enumerate(self.params.injectors):
            addr = self.forged_address(q.qname, q.qtype, i)
            payload = forged_response(q, addr, ttl=self.params.answer_ttl, flags=inj.dns_flags)
            fp = Fingerprint(ttl=inj.ttl, ip_id=inj.ip_id)
            raw = udp_packet(pkt.dst, pkt.src, 53, pkt.sport, ttl=fp.ttl_for(pkt), ip_id=fp.ip_id_for(self.ctx.rng),
                             payload=payload)
            out.append(Inject(raw, pkt.src, f"dns_answer_{i}"))
            answers.append(addr)
        out.append(Log("dns_inject", {"qname": q.qname, "qtype": q.qtype, "match": pattern, "answers": answers}))
        return out
