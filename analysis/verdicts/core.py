"""The verdict model and a read-only view of one stored measurement.

A **verdict** says what a measurement shows about one input from one vantage:

* ``ok``: it worked, and where a control exists it agrees;
* ``down``: it failed, and the control (an uncensored vantage) failed the same way;
* ``blocked``: the signature of a known censorship technique (``method``), with
  the evidence that shows it;
* ``inconclusive``: anything else: no control, a failed control, weak or
  contradictory evidence. A false ``blocked`` can hurt real people, so every
  rule falls back to this.

Rules read measurements only through :class:`Measurement` and return
:class:`Verdict` objects; :mod:`censorscope.analysis.verdicts.engine` turns
them into table rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

#: Version of the whole rule set, stored in every verdict row. Bump it when any
#: rule changes what it concludes (docs/verdicts.md keeps the history).
RULES_VERSION = "2026.11.2"

OK = "ok"
DOWN = "down"
BLOCKED = "blocked"
INCONCLUSIVE = "inconclusive"
VERDICTS = (OK, DOWN, BLOCKED, INCONCLUSIVE)

# Confidence levels shared by the rules, so that "how sure" means the same
# thing everywhere (docs/verdicts.md, "Confidence").
CONFIRMED = 0.95   # a known fingerprint (block page, known forged address): OONI's "confirmed"
STRONG = 0.85      # a clear signature plus an agreeing control
MODERATE = 0.7     # a signature plus a control, with a plausible benign explanation left
WEAK = 0.5         # a hint only: never enough for "blocked"
MIN_BLOCKED = 0.6  # below this a rule must not say "blocked"


#: True in the mypyc-compiled module (setup.py), False when the Python source runs
_NATIVE = not __file__.endswith(".py")


@dataclass(frozen=True, init=False)
class Verdict:
    """One judgement. ``endpoint`` (``IP:PORT``) names the server and port a
    failure happened on, so later measurements there can be checked for
    residual censorship; ``self_controlled`` is True when the same measurement
    reached that endpoint with an innocuous name at the same time (which rules
    residual state out). ``at`` and ``endpoints`` place the failure in time and
    on every server address it hit, for the same purpose."""

    verdict: str
    method: str | None = None
    confidence: float = 0.0
    evidence: str = ""
    endpoint: str | None = None
    self_controlled: bool = False
    at: float | None = None  # when the failing operation started, seconds after the measurement start
    endpoints: tuple[str, ...] = ()  # every endpoint that failed the same way (``endpoint`` first)

    def __init__(self, verdict: str, method: str | None = None, confidence: float = 0.0, evidence: str = "",
                 endpoint: str | None = None, self_controlled: bool = False, at: float | None = None,
                 endpoints: tuple[str, ...] = ()) -> None:
        # The generated __init__ of a frozen dataclass, written out (verdicts are made by the million).
        # Compiled (mypyc), a store to a field is a native store that the frozen __setattr__ never sees
        # (measured ~50x cheaper than the generated __init__, which stays interpreted); the Python source
        # stores through object.__setattr__ as the generated one does. Frozen afterwards either way.
        if _NATIVE:
            self.verdict = verdict  # type: ignore[misc]
            self.method = method  # type: ignore[misc]
            self.confidence = confidence  # type: ignore[misc]
            self.evidence = evidence  # type: ignore[misc]
            self.endpoint = endpoint  # type: ignore[misc]
            self.self_controlled = self_controlled  # type: ignore[misc]
            self.at = at  # type: ignore[misc]
            self.endpoints = endpoints  # type: ignore[misc]
        else:
            put = object.__setattr__
            put(self, "verdict", verdict)
            put(self, "method", method)
            put(self, "confidence", confidence)
            put(self, "evidence", evidence)
            put(self, "endpoint", endpoint)
            put(self, "self_controlled", self_controlled)
            put(self, "at", at)
            put(self, "endpoints", endpoints)
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")
        if self.verdict == BLOCKED and (not self.method or self.confidence < MIN_BLOCKED):
            raise ValueError("a blocked verdict needs a method and confidence >= MIN_BLOCKED")

    def with_evidence(self, extra: str) -> Verdict:
        """The same verdict with ``extra`` appended to its evidence."""
        return replace(self, evidence=f"{self.evidence} {extra}".strip())


def ok(evidence: str, confidence: float = 0.9) -> Verdict:
    """An ``ok`` verdict."""
    return Verdict(OK, None, confidence, evidence)


def down(evidence: str, confidence: float = MODERATE) -> Verdict:
    """A ``down`` verdict: the control failed the same way."""
    return Verdict(DOWN, None, confidence, evidence)


def blocked(method: str, confidence: float, evidence: str, *, endpoint: str | None = None,
            self_controlled: bool = False, at: Any = None) -> Verdict:
    """A ``blocked`` verdict; falls back to ``inconclusive`` below ``MIN_BLOCKED``."""
    if confidence < MIN_BLOCKED:
        return inconclusive(f"{evidence} (too weak for {method})", confidence)
    at_s = float(at) if isinstance(at, int | float) else None
    return Verdict(BLOCKED, method, confidence, evidence, endpoint, self_controlled, at_s,
                   (endpoint,) if endpoint else ())


def inconclusive(evidence: str, confidence: float = 0.3, method: str | None = None) -> Verdict:
    """An ``inconclusive`` verdict (``confidence``: how much the evidence leans to a finding)."""
    return Verdict(INCONCLUSIVE, method, confidence, evidence)


#: date text (``YYYY-MM-DD``) -> days since 1970-01-01, for parse_time's usual form
_DAYS: dict[str, int] = {}
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
#: integers below this are exact as doubles
_EXACT = 1 << 53


def parse_time(stamp: Any) -> float | None:
    """``measurement_start_time`` (ISO 8601, ``Z``) as a POSIX timestamp, or None (also for a
    value that is not a string: a malformed record has no usable time)."""
    if not stamp or not isinstance(stamp, str):
        return None
    if len(stamp) == 27 and stamp[26] == "Z" and stamp[10] == "T" and stamp.isascii():
        # the form censorscope writes (2026-10-01T12:34:56.789012Z): the date parsed once per day, the
        # time of day in integers; the same value as datetime's timestamp() (an integer count of
        # microseconds divided by 10**6), and any text this does not vouch for takes the general path
        found = _usual_time(stamp)
        if found is not None:
            return found
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _usual_time(stamp: str) -> float | None:
    if stamp[13] != ":" or stamp[16] != ":" or stamp[19] != ".":
        return None
    hh, mm, ss, us = stamp[11:13], stamp[14:16], stamp[17:19], stamp[20:26]
    if not (hh.isdigit() and mm.isdigit() and ss.isdigit() and us.isdigit()):
        return None
    h, m, sec = int(hh), int(mm), int(ss)
    if h > 23 or m > 59 or sec > 59:
        return None
    day = stamp[:10]
    days = _DAYS.get(day)
    if days is None:
        if day[4] != "-" or day[7] != "-":
            return None
        try:
            days = dt.date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            return None
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        _DAYS[day] = days
    total = (days * 86400 + h * 3600 + m * 60 + sec) * 1_000_000 + int(us)
    if not -_EXACT < total < _EXACT:
        return None  # beyond 2**53 us (after 2255) compiled code divides inexactly: the general path
    return total / 1_000_000  # both exact doubles: one correctly rounded division, as int / int gives


def host_of(value: str | None) -> str | None:
    """The host name or address inside an input: URL, ``HOST:PORT``, ``[v6]:PORT`` or bare."""
    if not value:
        return None
    if "://" in value:
        return _url_host(value)
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


@lru_cache(maxsize=65536)
def _url_host(url: str) -> str | None:
    # inputs repeat across a campaign (every vantage, every day): split each distinct URL once
    return urlsplit(url).hostname


def _by_operation(observations: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    by: dict[Any, list[dict[str, Any]]] = {}
    for o in observations:
        op = o.get("operation")
        if op in by:
            by[op].append(o)
        else:
            by[op] = [o]
    return by


_EMPTY: dict[Any, list[dict[str, Any]]] = {}
_NONE: list[dict[str, Any]] = []  # what the ``*_view`` accessors return for an absent operation (never changed)


class Measurement:
    """Read-only access to one stored measurement and its control.

    ``control`` of a stored measurement is null or a dict with at least
    ``observations`` (same format, made from an uncensored vantage) and maybe
    ``failure`` (the control helper itself could not run).

    The record is treated as immutable: observations are indexed by operation
    (and by id) once, when the view is made.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.id: str = str(record.get("measurement_id") or "")
        self.probe: str = str(record.get("probe") or "")
        self.input: str = str(record.get("input") or "")
        self.observations: list[dict[str, Any]] = [o for o in record.get("observations") or () if isinstance(o, dict)]
        control = record.get("control")
        self.control: dict[str, Any] | None = control if isinstance(control, dict) else None
        self.control_observations: list[dict[str, Any]] = (
            [o for o in control.get("observations") or () if isinstance(o, dict)] if isinstance(control, dict) else []
        )
        self.annotations: dict[str, Any] = record.get("annotations") or {}
        self.vantage: dict[str, Any] = record.get("vantage") or {}
        self.attempt: int = int(record.get("attempt") or 0)
        self.start: float | None = parse_time(record.get("measurement_start_time"))
        self.host: str | None = host_of(self.input)
        self._by_id: dict[Any, dict[str, Any]] | None = None  # built on first use
        self._ops = _by_operation(self.observations)
        self._control_ops: dict[Any, list[dict[str, Any]]] | None = None if self.control_observations else _EMPTY
        self._control_state: str | None = None
        self._vantage_key: tuple[Any, ...] | None = None

    # --- observations ---------------------------------------------------
    def ops(self, operation: str) -> list[dict[str, Any]]:
        """The measurement's observations of one operation, in order."""
        found = self._ops.get(operation)
        return list(found) if found else []

    def control_ops(self, operation: str) -> list[dict[str, Any]]:
        """The control's observations of one operation, in order."""
        found = self.control_ops_view(operation)
        return list(found) if found else []

    def ops_view(self, operation: str) -> list[dict[str, Any]]:
        """Like :meth:`ops` without the copy: the shared index list, which callers must not change
        (for the rules' hot paths)."""
        return self._ops.get(operation) or _NONE

    def control_ops_view(self, operation: str) -> list[dict[str, Any]]:
        """Like :meth:`control_ops` without the copy (callers must not change it)."""
        index = self._control_ops
        if index is None:  # indexed on first use: many verdicts never look at the control
            index = self._control_ops = _by_operation(self.control_observations)
        return index.get(operation) or _NONE

    def obs(self, obs_id: Any) -> dict[str, Any] | None:
        """The observation with this id."""
        by_id = self._by_id
        if by_id is None:
            by_id = self._by_id = {o.get("id"): o for o in self.observations}
        return by_id.get(obs_id)

    def ancestors(self, o: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The observations ``o`` builds on, nearest first (follows ``parent_id``)."""
        seen = set()
        parent = self.obs(o.get("parent_id"))
        while parent is not None and parent.get("id") not in seen:
            seen.add(parent.get("id"))
            yield parent
            parent = self.obs(parent.get("parent_id"))

    def descends_from(self, o: dict[str, Any], ancestor: dict[str, Any]) -> bool:
        """True when ``ancestor`` is one of the observations ``o`` builds on (the walk of
        :meth:`ancestors`, without a generator)."""
        by_id = self._by_id
        if by_id is None:
            by_id = self._by_id = {x.get("id"): x for x in self.observations}
        seen = set()
        parent = by_id.get(o.get("parent_id"))
        while parent is not None:
            pid = parent.get("id")
            if pid in seen:
                return False
            if parent is ancestor:
                return True
            seen.add(pid)
            parent = by_id.get(parent.get("parent_id"))
        return False

    # --- the control ----------------------------------------------------
    @property
    def control_state(self) -> str:
        """``missing`` (no control), ``failed`` (the helper could not run) or ``present``."""
        state = self._control_state
        if state is None:
            if self.control is None:
                state = "missing"
            elif self.control.get("failure"):
                state = "failed"
            elif not self.control_observations:
                state = "missing"
            else:
                state = "present"
            self._control_state = state
        return state

    def control_note(self) -> str:
        """Why the control cannot be used, as a phrase for evidence."""
        if self.control_state == "failed":
            return f"the control failed to run ({self.control.get('failure')})"  # type: ignore[union-attr]
        return "there is no control measurement"

    # --- grouping -------------------------------------------------------
    @property
    def confirms(self) -> str | None:
        """The measurement id this one re-tests (``annotations.confirms``), if any."""
        c = self.annotations.get("confirms")
        return str(c) if c else None

    @property
    def vantage_key(self) -> tuple[Any, ...]:
        """Identifies "the same client" for residual-censorship checks."""
        key = self._vantage_key
        if key is None:
            v = self.vantage
            key = self._vantage_key = (v.get("cc"), v.get("asn"), v.get("network"), self.record.get("run_id"))
        return key


def address_of(o: dict[str, Any]) -> str | None:
    """``IP:PORT`` of an observation (``address``, or ``ip`` and ``port``)."""
    a = o.get("address")
    if a:
        return a if type(a) is str else str(a)
    if o.get("ip") and o.get("port") is not None:
        ip = str(o["ip"])
        return f"[{ip}]:{o['port']}" if ":" in ip else f"{ip}:{o['port']}"
    return None


def ip_of(address: str | None) -> str | None:
    """The IP part of ``IP:PORT`` / ``[v6]:PORT`` (or the value when it has no port)."""
    if not address:
        return None
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def find_control(m: Measurement, operation: str, **match: Any) -> list[dict[str, Any]]:
    """Control observations of ``operation`` whose fields equal ``match`` (None values ignored)."""
    want = [(k, v) for k, v in match.items() if v is not None]
    out = []
    for o in m.control_ops_view(operation):
        for k, v in want:
            if not ((address_of(o) if k == "address" else o.get(k)) == v):
                break
        else:
            out.append(o)
    return out


def first(items: Iterable[Any]) -> Any:
    """The first item, or None."""
    return next(iter(items), None)
