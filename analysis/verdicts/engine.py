"""The verdict engine: rule registry, batch judging, and the verdict table.

``verdicts(measurements)`` judges a batch of stored measurements (dicts, or
paths to JSONL files and directories) and returns one row per measurement
group (a first attempt and its re-tests) with the columns in :data:`COLUMNS`.
Rules are looked up by probe name in :data:`RULES`; ``register`` adds one (the
VPN and circumvention probes' owners use it for ``vpn.*`` rules).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from censorscope.analysis.verdicts import dns, fet, http, quic, tcp, throughput, tls, vpn, web
from censorscope.analysis.verdicts.combine import (
    ResidualTracker,
    combine_attempts,
    event_time,
    group_key,
    groups,
)
from censorscope.analysis.verdicts.context import Context
from censorscope.analysis.verdicts.core import BLOCKED, RULES_VERSION, Measurement, Verdict, inconclusive
from censorscope.analysis.verdicts.load import LoadReport, iter_records

if TYPE_CHECKING:
    import pandas as pd

Rule = Callable[[Measurement, Context], Verdict]

#: what a rule raises on a record with a field of the wrong type or shape (judged inconclusive)
MALFORMED = (TypeError, AttributeError, KeyError, IndexError, ValueError)

#: the verdict table's columns, in order (the verdict contract: also the ``report --json`` keys)
COLUMNS = ("measurement_id", "input", "probe", "vantage_cc", "vantage_asn", "verdict", "method", "confidence",
           "evidence", "rules_version")
#: further columns of the DataFrame, for aggregation over time (``censorscope.analysis.aggregate``)
EXTRA_COLUMNS = ("measurement_start_time",)

#: probe name -> rule
RULES: dict[str, Rule] = {
    "dns": dns.rule, "system": dns.rule, "tcp": tcp.rule, "tls": tls.rule, "http": http.rule, "web": web.rule,
    "throughput": throughput.rule, "quic": quic.rule, "fet": fet.rule,
    **{name: vpn.rule for name in vpn.PROTOCOLS},
}


def register(probe: str, rule: Rule | None = None, *, replace: bool = False) -> Any:
    """Register ``rule`` for ``probe`` (usable as a decorator: ``@register("openvpn", replace=True)``).

    Registering over an existing rule needs ``replace=True``, so two owners
    never overwrite each other by accident.
    """
    def add(fn: Rule) -> Rule:
        if probe in RULES and not replace and RULES[probe] is not fn:
            raise ValueError(f"a verdict rule for probe {probe!r} exists; pass replace=True to replace it")
        RULES[probe] = fn
        return fn

    return add(rule) if rule is not None else add


def _judge_one(m: Measurement, ctx: Context) -> Verdict:
    ann = m.annotations  # the record's annotations ({} when absent or null)
    if ann and (ann.get("probe_error") or ann.get("runner_failure")):
        if ann.get("incomplete"):  # cut off by the watchdog, or the probe crashed: a part proves nothing
            why = ann.get("runner_detail") or ann.get("probe_error") or ann.get("runner_failure")
            return inconclusive(f"The measurement did not finish ({why}); "
                                f"its {len(m.observations)} partial observation(s) are not judged.", 0.0)
        what = ann.get("probe_error") or ann.get("runner_failure")
        return inconclusive(f"The probe could not run: {what}.", 0.0)
    rule = RULES.get(m.probe)
    if rule is None:
        return inconclusive(f"No verdict rule for probe {m.probe!r} (rules {RULES_VERSION}).", 0.0)
    try:
        return rule(m, ctx)
    except MALFORMED:
        # a field of the wrong type or shape (a hand-edited or foreign file): one bad record must not
        # stop the batch, and proves nothing
        return inconclusive(f"The measurement is malformed: a field of the {m.probe} record has an unexpected "
                            "type or shape, so it is not judged.", 0.0)


_gc_lock = threading.Lock()
_gc_users = 0
_gc_was_enabled: list[bool] = []


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is judged, then restore its state.

    Why: judging allocates many containers (observation indexes, verdicts,
    evidence) while the whole batch stays alive, so every collector pass
    re-scans them: with the default threshold measured 25-40 % of the engine's
    CPU; with a raised threshold still 5.6 % (158 passes for 50,000 records).
    Nothing is lost: the engine's objects are freed by reference counting, and
    any cycle made meanwhile is collected once the collector runs again.
    Process-wide, so nested or concurrent batches share one pause; a collector
    the caller had disabled stays disabled.
    """
    global _gc_users
    with _gc_lock:
        if _gc_users == 0:
            _gc_was_enabled.append(gc.isenabled())
            gc.disable()
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_was_enabled.pop():
                gc.enable()


def judge_batch(records: Iterable[dict[str, Any]]) -> list[tuple[Measurement, Verdict]]:
    """Judge a batch: one (first measurement of the group, verdict) per attempt group, in time order.

    Each measurement is judged, then checked for residual censorship in the order
    its failing operations started; then the attempts of each group are combined.
    """
    with _fewer_gc_passes():
        return _judge_batch(records)


def _judge_batch(records: Iterable[dict[str, Any]]) -> list[tuple[Measurement, Verdict]]:
    ms = [Measurement(r) for r in records if isinstance(r, dict)]
    ctx = Context(ms)
    tracker = ResidualTracker()
    single = {id(m): _judge_one(m, ctx) for m in ms}
    # The tracker passes every verdict but "blocked" through unchanged and remembers nothing about
    # it, so only the blocked ones need checking, in the same (stable) time order as all of them.
    suspects = [m for m in ms if single[id(m)].verdict == BLOCKED]
    for m in sorted(suspects, key=lambda x: event_time(x, single[id(x)]) or 0.0):
        single[id(m)] = tracker.check(m, single[id(m)])
    return [(group[0], combine_attempts(group, [single[id(m)] for m in group]) if len(group) > 1
             else single[id(group[0])]) for group in groups(ms)]


def verdict_for(measurement: dict[str, Any], related: Iterable[dict[str, Any]] = ()) -> Verdict:
    """The verdict for one measurement, using ``related`` measurements (its re-tests,
    earlier measurements from the same vantage, same-path references) as context."""
    batch = [measurement, *related]
    key = group_key(Measurement(measurement))
    for m, v in judge_batch(batch):
        if group_key(m) == key:
            return v
    raise AssertionError("the measurement's group was not judged")  # judge_batch judges every group


def _row(m: Measurement, v: Verdict) -> dict[str, Any]:
    return {
        "measurement_id": m.id, "input": m.input, "probe": m.probe,
        "vantage_cc": m.vantage.get("cc"), "vantage_asn": m.vantage.get("asn"),
        "verdict": v.verdict, "method": v.method, "confidence": round(float(v.confidence), 3),
        "evidence": v.evidence, "rules_version": RULES_VERSION,
        "measurement_start_time": m.record.get("measurement_start_time"),
    }


def verdict_rows(measurements: Any, report: LoadReport | None = None) -> list[dict[str, Any]]:
    """Verdict rows (dicts with :data:`COLUMNS` and :data:`EXTRA_COLUMNS`) without pandas."""
    judged = judge_batch(iter_records(measurements, report))
    with _fewer_gc_passes():
        return [_row(m, v) for m, v in judged]


def verdict_columns(measurements: Any, report: LoadReport | None = None) -> dict[str, list[Any]]:
    """The same table as :func:`verdict_rows`, column by column (what a DataFrame is built from)."""
    judged = judge_batch(iter_records(measurements, report))
    ms = [m for m, _ in judged]
    vs = [v for _, v in judged]
    vantages = [m.vantage for m in ms]
    return {
        "measurement_id": [m.id for m in ms], "input": [m.input for m in ms], "probe": [m.probe for m in ms],
        "vantage_cc": [x.get("cc") for x in vantages], "vantage_asn": [x.get("asn") for x in vantages],
        "verdict": [v.verdict for v in vs], "method": [v.method for v in vs],
        "confidence": [round(float(v.confidence), 3) for v in vs], "evidence": [v.evidence for v in vs],
        "rules_version": [RULES_VERSION] * len(vs),
        "measurement_start_time": [m.record.get("measurement_start_time") for m in ms],
    }


def verdicts(measurements: Any) -> pd.DataFrame:
    """Judge measurements and return the verdict table.

    ``measurements``: an iterable of stored measurement dicts, or a path / list
    of paths to JSONL files or directories of them. Columns: :data:`COLUMNS`
    then :data:`EXTRA_COLUMNS` (``verdict`` in ok/down/blocked/inconclusive; ``method`` null unless
    blocked or residual; ``confidence`` 0..1). ``df.attrs["torn_lines"]`` lists
    unreadable lines as ``(path, line_number)``.
    """
    import pandas as pd

    report = LoadReport()
    columns = verdict_columns(measurements, report)
    # built from columns (same type inference as from rows of dicts); an empty table as before
    df = pd.DataFrame(columns if columns["measurement_id"] else [], columns=list(COLUMNS + EXTRA_COLUMNS))
    for col in ("method", "vantage_cc", "vantage_asn"):  # keep missing values None, never NaN
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df.attrs["torn_lines"] = list(report.torn)
    return df
