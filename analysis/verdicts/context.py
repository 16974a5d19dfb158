"""What the other measurements of a batch tell about one measurement.

Some evidence spans measurements: an address proven to serve a name (a valid
certificate for it) makes a differing DNS answer a CDN answer, not a forgery;
a resolver that answers other names makes a timeout for one name suspicious;
a same-path reference transfer separates throttling from a slow path. The
engine builds one :class:`Context` per batch and hands it to every rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from censorscope.analysis.verdicts.core import Measurement, address_of, ip_of


def leaf_sha256(hs: dict[str, Any]) -> str | None:
    """SHA-256 of the leaf certificate a ``tls_handshake`` saw."""
    certs = hs.get("peer_certificates") or []
    return certs[0].get("sha256") if certs and isinstance(certs[0], dict) else None


def verified_for_name(hs: dict[str, Any]) -> bool:
    """True when the handshake's certificate verified, hostname included."""
    v = hs.get("verification") or {}
    return bool(v.get("ok")) and v.get("hostname_ok", True) is not False


def _answered_names(m: Measurement) -> list[tuple[str, str]]:
    out = []
    for q in m.ops_view("dns_query"):
        if not q.get("failure") and q.get("addresses"):
            out.append((str(q.get("resolver")), str(q.get("query_name", "")).lower()))
    return out


def _collect_validated(m: Measurement, validated: dict[str, dict[str, str]]) -> None:
    """Add the addresses ``m`` shows serve a name (a certificate valid for it, or the control's)."""
    control_leaves: dict[str, set[str]] | None = None  # built when a handshake needs it
    for hs in m.ops_view("tls_handshake"):
        name = str(hs.get("server_name") or "").lower()
        if hs.get("failure") or not name:
            continue
        ip = ip_of(address_of(hs))
        if not ip:
            continue
        known = validated.get(name)
        if known is not None and ip in known:
            continue  # the first measurement that showed it is the one named
        if verified_for_name(hs):
            validated[name][ip] = f"{m.probe} measurement {m.id}: certificate valid for {name}"
            continue
        leaf = leaf_sha256(hs)
        if not leaf:
            continue
        if control_leaves is None:
            control_leaves = defaultdict(set)
            for c in m.control_ops_view("tls_handshake"):
                c_leaf = leaf_sha256(c)
                if c_leaf and not c.get("failure"):
                    control_leaves[str(c.get("server_name") or "").lower()].add(c_leaf)
        if leaf in control_leaves.get(name, set()):
            validated[name][ip] = f"{m.probe} measurement {m.id}: same certificate as the control for {name}"


_Facts = tuple[dict[tuple[Any, str], set[str]], dict[str, dict[str, str]]]
_T = TypeVar("_T")


class Context:
    """Cross-measurement facts of one batch (see the module docstring).

    The facts are gathered on first use: only some verdicts ask (a DNS failure,
    an answer that differs from the control's), and a batch without them never
    pays for the scan."""

    def __init__(self, measurements: list[Measurement]) -> None:
        self.measurements = measurements
        self.by_id = {m.id: m for m in measurements}
        self._facts: _Facts | None = None
        self._indexes: dict[str, Any] = {}

    def index(self, name: str, build: Callable[[Context], _T]) -> _T:
        """A per-batch index that a rule needs, made by ``build(self)`` on the first call for ``name``
        and kept with the batch (one place for every rule's cross-measurement index)."""
        indexes = self._indexes
        if name in indexes:
            return indexes[name]  # type: ignore[no-any-return]
        made = indexes[name] = build(self)
        return made

    def _batch_facts(self) -> _Facts:
        facts = self._facts
        if facts is None:
            resolver_names: dict[tuple[Any, str], set[str]] = defaultdict(set)
            validated: dict[str, dict[str, str]] = defaultdict(dict)
            for m in self.measurements:
                if m.ops_view("dns_query"):
                    for resolver, name in _answered_names(m):
                        resolver_names[(m.vantage_key, resolver)].add(name)
                if m.ops_view("tls_handshake"):
                    _collect_validated(m, validated)
            facts = self._facts = (resolver_names, validated)
        return facts

    @property
    def _resolver_names(self) -> dict[tuple[Any, str], set[str]]:
        """(vantage, resolver) -> the names that resolver answered in this batch."""
        return self._batch_facts()[0]

    @property
    def _validated(self) -> dict[str, dict[str, str]]:
        """name -> {ip: why ip is known to serve name}, over this batch."""
        return self._batch_facts()[1]

    def resolver_answers_others(self, m: Measurement, resolver: str | None, name: str | None) -> int:
        """How many other names the same resolver answered for the same vantage in this batch."""
        names = self._resolver_names.get((m.vantage_key, str(resolver)), set())
        return len(names - {str(name or "").lower()})

    def validated(self, name: str | None, ip: str | None) -> str | None:
        """Why ``ip`` is known to serve ``name`` (from any measurement of the batch), or None."""
        if not name or not ip:
            return None
        return self._validated.get(name.lower(), {}).get(ip)

    def same_vantage(self, m: Measurement) -> list[Measurement]:
        """Other measurements of the batch from the same vantage and run (in batch order).

        The batch is indexed by vantage on the first call (a scan per call made
        judging a batch quadratic); a batch with an unhashable vantage field
        (malformed JSON: a list where a string belongs) is scanned as before."""
        same = _lookup(self.index("context.by_vantage", _by_vantage), m.vantage_key)
        if same is None:
            return [o for o in self.measurements if o is not m and o.vantage_key == m.vantage_key]
        return [o for o in same if o is not m]

    def same_vantage_probe(self, m: Measurement, probe: str) -> list[Measurement]:
        """``same_vantage(m)`` restricted to measurements of ``probe`` (batch order), from an index by
        (vantage, probe) built on first use: rules that look for one probe's measurements (throughput
        references) no longer walk every measurement of the vantage per call."""
        same = _lookup(self.index("context.by_vantage_probe", _by_vantage_probe), (m.vantage_key, probe))
        if same is None:
            return [o for o in self.same_vantage(m) if o.probe == probe]
        return [o for o in same if o is not m]


_Index = dict[Any, list[Measurement]]


def _grouped(ms: list[Measurement], key: Callable[[Measurement], Any]) -> _Index | None:
    """``ms`` grouped by ``key`` (batch order kept), or None when a key is unhashable."""
    index: _Index = {}
    try:
        for o in ms:
            k = key(o)
            if k in index:
                index[k].append(o)
            else:
                index[k] = [o]
    except TypeError:
        return None
    return index


def _by_vantage(ctx: Context) -> _Index | None:
    return _grouped(ctx.measurements, lambda o: o.vantage_key)


def _by_vantage_probe(ctx: Context) -> _Index | None:
    return _grouped(ctx.measurements, lambda o: (o.vantage_key, o.probe))


def _lookup(index: _Index | None, key: Any) -> list[Measurement] | None:
    """The group of ``key``; None when the batch could not be indexed or ``key`` is unhashable (a
    measurement from outside the batch): the caller then scans."""
    if index is None:
        return None
    try:
        return index.get(key, [])
    except TypeError:
        return None
