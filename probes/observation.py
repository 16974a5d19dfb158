"""Observations: timestamped facts about one network operation.

A probe returns a list of observations, one per operation it performed
(``resolve``, ``dns_round_trip``, ``connect``, ``tls_handshake``,
``http_round_trip``, ...). An observation never says "blocked": it says what
happened, with timings relative to the measurement start (``t0`` when the
operation began, ``t`` when it ended, in seconds), the failure string if it
failed (see ``failures``), the id of the observation it builds on
(``parent_id``: e.g. the ``connect`` a ``tls_handshake`` ran over) and the
operation's own fields. The operation schemas are documented in
docs/observations.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from censorscope.probes.failures import classify

#: where each new Recorder announces itself, per asyncio task (see ``watch_recorders``)
_SINK: ContextVar[list[Recorder] | None] = ContextVar("censorscope_recorder_sink", default=None)


def watch_recorders(sink: list[Recorder]) -> None:
    """Make every Recorder created from now on in this context (this task) append itself to ``sink``.

    Why: a campaign runner that must cut a probe off (its watchdog) still
    keeps what the probe observed until then, without every probe having to
    hand its recorder out. Tasks the probe starts inherit the context, so
    their recorders are collected too.
    """
    _SINK.set(sink)


@dataclass(slots=True)
class Observation:
    """One operation's record. ``fields`` holds the operation-specific data."""

    operation: str
    t0: float
    t: float
    failure: str | None = None
    id: int = 0
    parent_id: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form: the envelope keys first, then the fields."""
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "parent_id": self.parent_id,
            "t0": round(self.t0, 6),
            "t": round(self.t, 6),
            "failure": self.failure,
        }
        out.update(self.fields)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Observation:
        """Inverse of ``to_dict``."""
        rest = {k: v for k, v in d.items() if k not in ("id", "operation", "parent_id", "t0", "t", "failure")}
        return cls(
            operation=d["operation"], t0=d["t0"], t=d["t"], failure=d.get("failure"),
            id=d.get("id", 0), parent_id=d.get("parent_id"), fields=rest,
        )


class Step:
    """An operation in progress; finish it exactly once with ``ok`` or ``fail``."""

    __slots__ = ("_rec", "operation", "parent_id", "t0", "fields", "observation")

    def __init__(self, rec: Recorder, operation: str, parent_id: int | None, fields: dict[str, Any]) -> None:
        self._rec = rec
        self.operation = operation
        self.parent_id = parent_id
        self.t0 = rec.now()
        self.fields = fields
        self.observation: Observation | None = None

    def ok(self, **fields: Any) -> Observation:
        """Finish the operation successfully, adding ``fields``."""
        return self._finish(None, fields)

    def fail(self, exc_or_failure: BaseException | str, **fields: Any) -> Observation:
        """Finish the operation as failed; an exception is classified."""
        failure = exc_or_failure if isinstance(exc_or_failure, str) else classify(exc_or_failure)
        return self._finish(failure, fields)

    def _finish(self, failure: str | None, fields: dict[str, Any]) -> Observation:
        if self.observation is not None:
            raise RuntimeError(f"step {self.operation} finished twice")
        self._rec._open.pop(id(self), None)
        self.fields.update(fields)
        self.observation = self._rec.add(
            self.operation, self.t0, failure=failure, parent_id=self.parent_id, **self.fields
        )
        return self.observation


class Recorder:
    """Collects the observations of one measurement, assigning ids and times.

    ``clock`` is a monotonic clock in seconds (injected so tests can control
    it); all times are relative to the recorder's creation.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._next_id = 1
        self._observations: list[Observation] = []
        self._open: dict[int, Step] = {}  # begun, not yet finished (what a cut-off measurement was doing)
        sink = _SINK.get()
        if sink is not None:
            sink.append(self)

    def now(self) -> float:
        """Seconds since the measurement started."""
        return self._clock() - self._start

    def reserve_id(self) -> int:
        """An id for an observation that will be added later (for linking)."""
        i = self._next_id
        self._next_id += 1
        return i

    def begin(self, operation: str, parent_id: int | None = None, **fields: Any) -> Step:
        """Start timing an operation; ``fields`` are recorded whatever the outcome."""
        step = Step(self, operation, parent_id, dict(fields))
        self._open[id(step)] = step
        return step

    def add(
        self, operation: str, t0: float, *, failure: str | None = None, parent_id: int | None = None,
        t: float | None = None, **fields: Any,
    ) -> Observation:
        """Record a finished operation that began at ``t0`` (ends now unless ``t`` is given)."""
        obs = Observation(
            operation=operation, t0=t0, t=self.now() if t is None else t, failure=failure,
            id=self.reserve_id(), parent_id=parent_id, fields=fields,
        )
        self._observations.append(obs)
        return obs

    @property
    def observations(self) -> list[Observation]:
        """Every observation so far, in the order the operations were recorded."""
        return list(self._observations)

    def unfinished(self) -> list[dict[str, Any]]:
        """The operations begun but not finished (``operation``, ``t0`` and the fields known so far)."""
        return [{"operation": s.operation, "parent_id": s.parent_id, "t0": round(s.t0, 6), **s.fields}
                for s in self._open.values()]

    def to_list(self) -> list[dict[str, Any]]:
        """The observations in their stored form."""
        return [o.to_dict() for o in self._observations]
