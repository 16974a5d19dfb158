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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from censorscope.measure.dns_bulk import resolve_many
from censorscope.measure.runner import Runner, Unit
from censorscope.probes.dns import normalize_name
from censorscope.probes.errors import InvalidTarget


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

    def names() -> Iterator[str]:
        for unit in runner.iter_units(reps=[rep]):
            if unit.resolver != resolver or unit.key in runner.done:
                continue
            if runner.stopping(stop):
                return
            try:
                pending[normalize_name(unit.target)] = unit  # the engine reports names normalised
            except InvalidTarget:
                pending[unit.target] = unit  # the engine will skip it too; recorded below
            yield unit.target

    def on_result(name: str, observations: list[dict[str, Any]], start: float, runtime: float) -> None:
        unit = pending.pop(name)
        m = runner.envelope(unit, observations, start, runtime, annotations=runner.base_annotations(unit))
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
