"""The runner's bulk path for DNS-over-UDP campaigns (``censorscope.measure.dns_bulk``).

A campaign whose only probe is ``dns`` over UDP with explicit resolvers does
not need one coroutine per name: ``resolve_many`` multiplexes thousands of
queries over a few sockets (PERF-NOTES.md: ~30x the per-query path) and hands
back, per name, the same observation dicts the ``dns`` probe stores. This
module feeds it the runner's units and turns each result into a stored
measurement, with the same envelope, done-set, progress and confirmation
hooks as the per-target path.

One ``resolve_many`` pass per (repetition, resolver), in run order, so
repetitions stay a pass apart. Names reach the engine lazily (a generator),
so memory stays bounded; ``stop`` ends the generator and the queries in
flight finish.

Per name, the stored measurement is ``Runner.envelope``'s, built with less
work (``_Envelopes``): the parts that are the same for a whole pass (probe,
version, campaign, run id, vantage, software) are prepared once, and the two
timestamps share one ``datetime`` and a per-second cache of their formatted
prefix instead of two ``strftime`` calls (a unit test checks the result is
``records.build_measurement``'s). With ``store_vantage_ip`` the runner's
own envelope is used (it looks up the local address per peer).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Iterator
from typing import Any

from censorscope.measure.dns_bulk import resolve_many
from censorscope.measure.records import SOFTWARE, Vantage
from censorscope.measure.runner import Runner, Unit
from censorscope.probes.dns import normalize_name
from censorscope.probes.errors import InvalidTarget

_UTC = dt.UTC
_fromtimestamp = dt.datetime.fromtimestamp


class _Envelopes:
    """``runner.envelope(unit, observations, start, runtime, annotations=...)`` for one pass's units."""

    def __init__(self, runner: Runner, resolver: str) -> None:
        c = runner.campaign
        module = runner.modules["dns"]
        v = c.vantage
        self.vantage = Vantage(cc=v.cc, asn=v.asn, network=v.network, resolver=resolver).to_dict()
        self.fixed = (c.name, runner.run_id, module.NAME, getattr(module, "VERSION", "0"))
        self.second: tuple[int, ...] = ()
        self.prefixes = ("", "")
        self.random = b""
        self.used = 0

    def _random_hex(self) -> str:
        """16 hex digits from the OS's random source (read 8 KiB at a time, as ``os.urandom(8)`` would give)."""
        if self.used >= len(self.random):
            self.random, self.used = os.urandom(8192), 0
        i = self.used
        self.used = i + 8
        return self.random[i:i + 8].hex()

    def build(self, unit: Unit, observations: list[dict[str, Any]], start: float, runtime: float,
              annotations: dict[str, Any]) -> dict[str, Any]:
        """The stored measurement (same keys, order and values as ``records.build_measurement``)."""
        d = _fromtimestamp(start, _UTC)
        second = (d.year, d.month, d.day, d.hour, d.minute, d.second)
        if second != self.second:
            self.second = second
            self.prefixes = (d.strftime("%Y%m%dT%H%M%S."), d.strftime("%Y-%m-%dT%H:%M:%S."))
        micro = f"{d.microsecond:06d}Z"
        campaign, run_id, probe, version = self.fixed
        return {
            "measurement_id": f"{self.prefixes[0]}{micro}_{self._random_hex()}", "campaign": campaign,
            "run_id": run_id, "probe": probe, "probe_version": version, "input": unit.target,
            "repetition": unit.repetition, "attempt": 0, "measurement_start_time": self.prefixes[1] + micro,
            "runtime": round(runtime, 6), "vantage": dict(self.vantage), "software": dict(SOFTWARE),
            "observations": observations, "control": None, "annotations": annotations,
        }


async def run_bulk_dns(runner: Runner, options: Any, stop: asyncio.Event) -> None:
    """Measure every pending ``dns`` unit of ``runner`` through ``resolve_many``."""
    c = runner.campaign
    qtypes = ("A", "AAAA") if options.qtype == "both" else (options.qtype,)
    for rep in range(c.repeat):
        for resolver in c.resolvers:
            if runner.stopping(stop):
                return
            await _one_pass(runner, options, rep, resolver, qtypes, stop)


async def _one_pass(
    runner: Runner, options: Any, rep: int, resolver: str, qtypes: tuple[str, ...], stop: asyncio.Event
) -> None:
    pending: dict[str, Unit] = {}
    envelopes = None if runner.campaign.store_vantage_ip else _Envelopes(runner, resolver)

    def names() -> Iterator[str]:
        for unit in runner.iter_units(reps=[rep]):
            if unit.resolver != resolver or unit.key in runner.done:
                continue
            if runner.stopping(stop):
                return
            pending[_reported_as(unit.target)] = unit
            yield unit.target

    def on_result(name: str, observations: list[dict[str, Any]], start: float, runtime: float) -> None:
        unit = pending.pop(name)
        annotations = runner.base_annotations(unit)
        if envelopes is not None:
            m = envelopes.build(unit, observations, start, runtime, annotations)
        else:
            m = runner.envelope(unit, observations, start, runtime, annotations=annotations)
        runner.finish_unit(unit, m)

    await resolve_many(
        names(), resolver, qtypes=qtypes, hold_window=options.hold_window, timeout=options.timeout,
        concurrency=runner.campaign.concurrency, on_result=on_result,
    )
    # names the engine could not encode never got a result: record them as the probe would
    for name, unit in pending.items():
        ann = runner.base_annotations(unit)
        ann["probe_error"] = f"InvalidTarget: cannot encode DNS name {name!r}"
        runner.finish_unit(unit, runner.envelope(unit, [], time.time(), 0.0, annotations=ann))


def _reported_as(target: str) -> str:
    """The name the engine reports for ``target`` (normalised; the runner's targets already are)."""
    if target.isascii() and target == target.strip() and not target.endswith("."):
        return target  # normalize_name would return it unchanged (or the engine skips it: recorded then)
    try:
        return normalize_name(target)
    except InvalidTarget:
        return target  # the engine will skip it too; recorded after the pass
