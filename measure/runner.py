"""Run a campaign: every (probe, target, repetition[, resolver]) once, concurrently.

Shape of a run::

    target lists (streamed) -> units, shuffled in windows -> bounded queue
        -> N workers (global concurrency) -> per-server semaphore -> probe.measure
        -> envelope (records.build_measurement) + control -> JSONL store
        -> confirmer re-tests (attempt 1, 2, ...)

* **Units.** Each list entry is mapped to a probe target by the probe module's
  ``target_from_url(url)`` (None: the probe does not apply, skipped). The same
  target from two URLs (``http://a/x`` and ``http://a/y`` for ``tcp``) is
  measured once. A unit is done when a first attempt for its
  ``(probe, input, repetition, resolver)`` is stored; ``--resume`` skips those.
* **Order.** Repetitions are the outer loop, so the repetitions of one target
  are a whole pass apart: censors keep blocking a (client, server, port) for
  minutes after a trigger ("residual censorship"), and back-to-back repeats
  would measure the penalty instead of the rule. Within a pass the units are
  shuffled deterministically (``seed``) in windows of ``SHUFFLE_WINDOW`` list
  entries, which spreads load across servers and keeps memory bounded.
* **Memory** stays bounded for any list size: lists are streamed, the queue is
  bounded, and only the de-duplication/done sets grow with the list.
* **Concurrency**: ``concurrency`` workers, and at most ``per_server``
  measurements at a time against one server (the input's host). Units of a
  server at its limit are parked (a bounded number) so the workers keep
  measuring other servers instead of queueing behind one.
* **Failures are data**: a probe that raises ``ProbeError`` for one target
  (it could not run) yields a measurement with no observations and
  ``annotations.probe_error``. Neither stops the run.
* **Watchdog** (a last resort against probe bugs, not a measurement limit):
  a probe still running after ``WATCHDOG_FACTOR`` x its timeout (at least
  ``WATCHDOG_MIN`` s), or after ``WORST_CASE_MARGIN`` x its own
  ``worst_case(target, options)`` when it declares one (multi-step probes
  legitimately run longer than a few timeouts), whichever is longest, is cut
  off. Its measurement keeps every observation recorded until then, lists the
  operations still in progress (``annotations.unfinished_operations``) and
  carries ``annotations.runner_failure = "generic_timeout_error"`` and
  ``annotations.incomplete = true``: analysis judges it inconclusive. A probe
  that crashes (a bug: ``annotations.probe_error = "bug: ..."``) keeps its
  partial observations the same way.

Hook points implemented elsewhere (``ControlProvider``, ``Confirmer``) are
Protocols below; the runner calls them when given.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
import logging
import random
import socket
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from censorscope.measure.campaign import Campaign
from censorscope.measure.records import Vantage, build_measurement
from censorscope.measure.store import DoneKey, JsonlWriter
from censorscope.measure.targets import ListStats, iter_targets
from censorscope.probes import registry
from censorscope.probes.errors import ConfigError, ProbeError, StoreError
from censorscope.probes.failures import GENERIC_TIMEOUT
from censorscope.probes.net import Net, split_host_port
from censorscope.probes.observation import Recorder, watch_recorders

log = logging.getLogger(__name__)

SHUFFLE_WINDOW = 4096
WATCHDOG_FACTOR = 4.0
WATCHDOG_MIN = 30.0
#: headroom over a probe's declared worst case (a loaded machine runs every step a little late)
WORST_CASE_MARGIN = 1.5
DEFAULT_PROBE_TIMEOUT = 10.0
PARK_FACTOR = 4


@dataclass(frozen=True, slots=True)
class Retest:
    """A confirmation measurement a ``Confirmer`` asks for."""

    probe: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)  # overrides of the probe's Options fields
    delay: float = 0.0  # seconds to wait after the measurement that triggered it
    reason: str = ""


@runtime_checkable
class ControlProvider(Protocol):
    """Measures the same thing from an uncensored vantage (the control helper)."""

    async def control_for(self, probe: str, target: str, options: Any) -> dict[str, Any] | None:
        """The control measurement (stored in ``control``), or None when there is none."""
        ...


@runtime_checkable
class Confirmer(Protocol):
    """Decides whether a measurement deserves confirmation re-tests."""

    def retests(self, measurement: dict[str, Any]) -> list[Retest]:
        """Re-tests to run for ``measurement`` (often none)."""
        ...


class ProgressSink(Protocol):
    """Where the runner reports progress (a progress bar, log lines, nothing)."""

    def start(self, total: int, already_done: int) -> None:
        """Called once: units still to measure, and units found done (resume)."""
        ...

    def advance(self, measurement: dict[str, Any], failed: bool) -> None:
        """Called after each stored measurement."""
        ...


class DiskGuardLike(Protocol):
    """Checks free space before each write (``censorscope.measure.diskguard.DiskGuard``)."""

    def check(self, about_to_write: int = 0) -> None:
        """Raise ``StoreError`` when the reserve would be eaten."""
        ...


@dataclass(frozen=True, slots=True)
class Unit:
    """One thing to measure."""

    probe: str
    target: str
    repetition: int
    resolver: str | None
    url: str
    category: str | None

    @property
    def key(self) -> DoneKey:
        """Its identity in the done-set."""
        return (self.probe, self.target, self.repetition, self.resolver)


@dataclass
class RunSummary:
    """What a run did."""

    run_id: str
    path: Path
    planned: int = 0  # units of the whole campaign
    already_done: int = 0  # units found in the store (resume)
    measured: int = 0  # first attempts stored by this process
    retests: int = 0
    failed: int = 0  # measurements with at least one failure (or a runner/probe error)
    per_probe: Counter[str] = field(default_factory=Counter)
    per_failure: Counter[str] = field(default_factory=Counter)
    runtime: float = 0.0
    stopped: str | None = None  # why the run stopped early (None: it finished)
    list_stats: ListStats | None = None

    @property
    def complete(self) -> bool:
        """True when every planned unit is now stored."""
        return self.stopped is None and self.already_done + self.measured >= self.planned


def first_failure(measurement: dict[str, Any]) -> str | None:
    """The failure that characterises a measurement (runner/probe errors first, then observations)."""
    ann = measurement.get("annotations") or {}
    if ann.get("runner_failure"):
        return str(ann["runner_failure"])
    if ann.get("probe_error"):
        return "probe_error"
    for o in measurement.get("observations") or []:
        if o.get("failure"):
            return str(o["failure"])
    return None


def load_probes(names: list[str]) -> dict[str, types.ModuleType]:
    """Import the probe modules of ``names`` through the registry (UnknownProbe if absent)."""
    modules: dict[str, types.ModuleType] = {}
    for name in names:
        try:
            modules[name] = registry.load(name)
        except ModuleNotFoundError as e:
            raise ConfigError(f"probe {name!r} is registered but not installed ({e.name})") from None
    return modules


def server_of(target: str, url: str) -> str:
    """The server a unit talks to, for the per-server limit: the host of the input."""
    host = urlsplit(url).hostname
    if host:
        return host
    try:
        return split_host_port(target, 0)[0]
    except ValueError:
        return target


def _option_fields(module: types.ModuleType) -> set[str]:
    return {f.name for f in dataclasses.fields(module.Options)}


class Runner:
    """Runs one campaign run (new or resumed) into one JSONL writer.

    ``Runner(...)`` checks probes and options, ``plan()`` reads the lists once
    (counting units, raising ``ConfigError`` under ``strict``), ``run(writer)``
    measures. Nothing is written before ``run``.

    ``probes`` maps probe names to modules (default: loaded from the registry);
    tests inject fake probe modules here. ``net_factory(resolver)`` builds the
    ``Net`` given to probes.
    """

    def __init__(
        self,
        campaign: Campaign,
        run_id: str,
        *,
        done: set[DoneKey] | None = None,
        probes: Mapping[str, types.ModuleType] | None = None,
        control: ControlProvider | None = None,
        confirm: Confirmer | None = None,
        progress: ProgressSink | None = None,
        disk_guard: DiskGuardLike | None = None,
        net_factory: Callable[[str | None], Any] | None = None,
    ) -> None:
        self.campaign = campaign
        self.writer: JsonlWriter | None = None
        self.run_id = run_id
        self.done = done if done is not None else set()
        self.modules = dict(probes) if probes is not None else load_probes(campaign.probes)
        self.control = control
        self.confirm = confirm
        self.progress = progress
        self.disk_guard = disk_guard
        self._net_factory = net_factory or (lambda resolver: Net(resolver=resolver))
        self._nets: dict[str | None, Net] = {}
        self._servers: dict[str, list[Any]] = {}  # host -> [semaphore, users]
        self._retest_tasks: set[asyncio.Task[None]] = set()
        self._local_ip_cache: dict[str, str | None] = {}
        self._options_cache: dict[tuple[str, str | None], Any] = {}
        self._fatal: BaseException | None = None
        self._unfinished_retests: list[tuple[Unit, str, list[Retest], int]] = []
        self._stop = asyncio.Event()
        self._parked: dict[str, collections.deque[Unit]] = {}
        self._parked_count = 0
        self._parking = True  # until the producer has handed out every unit
        self._check_probes()
        self.summary = RunSummary(run_id=run_id, path=Path())
        self._planned = False

    # --- set-up ---------------------------------------------------------------
    def _check_probes(self) -> None:
        for name in self.campaign.probes:
            if name not in self.modules:
                raise ConfigError(f"probe {name!r} is not loaded")
            module = self.modules[name]
            if not callable(getattr(module, "target_from_url", None)):
                raise ConfigError(f"probe {name!r} cannot take list entries (it has no target_from_url)")
            unknown = set(self.campaign.probe_options.get(name, {})) - _option_fields(module)
            if unknown:
                raise ConfigError(
                    f"unknown option(s) {', '.join(sorted(unknown))} for probe {name!r} "
                    f"(known: {', '.join(sorted(_option_fields(module)))})"
                )
            if "resolver" in self.campaign.probe_options.get(name, {}):
                # one place for resolvers, so that every measurement's vantage.resolver is right
                raise ConfigError(f"set resolvers with [run] resolvers or --resolver, not in [probe.{name}]")
        extra = set(self.campaign.probe_options) - set(self.campaign.probes)
        if extra:
            raise ConfigError(f"[probe.{sorted(extra)[0]}] options given for a probe that is not run")
        for name in self.campaign.probes:
            for resolver in self._resolvers_for(name):
                self._options_cache[(name, resolver)] = self.options_for(name, resolver, {})

    def _resolvers_for(self, probe: str) -> list[str | None]:
        if self.campaign.resolvers and "resolver" in _option_fields(self.modules[probe]):
            return list(self.campaign.resolvers)
        return [None]

    def options_for(self, probe: str, resolver: str | None, overrides: dict[str, Any]) -> Any:
        """The probe's Options: campaign defaults, [probe.NAME] table, then ``overrides``."""
        module = self.modules[probe]
        fields = _option_fields(module)
        kwargs: dict[str, Any] = {}
        if self.campaign.timeout is not None and "timeout" in fields:
            kwargs["timeout"] = self.campaign.timeout
        if resolver is not None and "resolver" in fields:
            kwargs["resolver"] = resolver
        kwargs.update(self.campaign.probe_options.get(probe, {}))
        unknown = set(overrides) - fields
        if unknown:
            raise ConfigError(f"re-test overrides unknown option(s) {sorted(unknown)} of probe {probe!r}")
        kwargs.update(overrides)
        try:
            return module.Options(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad options for probe {probe!r}: {e}") from None

    # --- the plan ---------------------------------------------------------------
    def iter_units(self, stats: ListStats | None = None, reps: Iterable[int] | None = None) -> Iterator[Unit]:
        """Every unit of the campaign (of repetitions ``reps``) in run order, deterministic for a seed."""
        c = self.campaign
        seed = c.seed if c.seed is not None else 0
        for rep in range(c.repeat) if reps is None else reps:
            seen: set[tuple[str, str]] = set()
            window: list[Unit] = []
            chunk = 0
            targets = iter_targets(c.lists, c.urls, strict=c.strict, stats=stats if rep == 0 else None)
            for t in targets:
                for probe in c.probes:
                    target = self.modules[probe].target_from_url(t.url)
                    if target is None or (probe, target) in seen:
                        continue
                    seen.add((probe, target))
                    for resolver in self._resolvers_for(probe):
                        window.append(Unit(probe, target, rep, resolver, t.url, t.category_code))
                if len(window) >= SHUFFLE_WINDOW:
                    random.Random(f"{seed}:{rep}:{chunk}").shuffle(window)
                    yield from window
                    window, chunk = [], chunk + 1
            random.Random(f"{seed}:{rep}:{chunk}").shuffle(window)
            yield from window

    def plan(self) -> RunSummary:
        """Count the units (and those already done) in one streaming pass over the lists."""
        stats = ListStats()
        planned = done = 0
        for u in self.iter_units(stats):
            planned += 1
            if u.key in self.done:
                done += 1
        s = self.summary
        s.planned, s.already_done, s.list_stats = planned, done, stats
        self._planned = True
        return s

    # --- running ----------------------------------------------------------------
    async def run(self, writer: JsonlWriter, stop: asyncio.Event | None = None) -> RunSummary:
        """Measure every unit not yet done; stop early (in-flight ones finish) when ``stop`` is set."""
        stop = self._stop = stop or asyncio.Event()
        t0 = time.monotonic()
        if not self._planned:
            self.plan()
        self.writer = writer
        s = self.summary
        s.path = writer.path
        if self.progress:
            self.progress.start(s.planned - s.already_done, s.already_done)
        for unit, first_id, retests, first_attempt in self._unfinished_retests:
            self._start_retests(unit, first_id, retests, first_attempt)
        workers: list[asyncio.Task[None]] = []
        try:
            bulk = bulk_dns_options(self)
            if bulk is not None:
                from censorscope.measure.runner_bulk import run_bulk_dns

                await run_bulk_dns(self, bulk, stop)
            else:
                queue: asyncio.Queue[Unit | None] = asyncio.Queue(maxsize=2 * self.campaign.concurrency)
                workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.campaign.concurrency)]
                await self._feed(queue, workers, stop)
            while self._retest_tasks and self._fatal is None:
                # a stop wakes re-tests waiting for their delay; those measuring finish and are stored
                await asyncio.gather(*list(self._retest_tasks), return_exceptions=True)
        finally:
            for w in workers:
                w.cancel()
            for task in self._retest_tasks:
                task.cancel()
            s.runtime = time.monotonic() - t0
        if self._fatal is not None:
            raise self._fatal
        return s

    async def _feed(self, queue: asyncio.Queue[Unit | None], workers: list[asyncio.Task[None]],
                    stop: asyncio.Event) -> None:
        for unit in self.iter_units():
            if self.stopping(stop):
                break
            if unit.key in self.done:
                continue
            if self._fatal is not None:
                break
            if self._park(unit):
                continue
            await queue.put(unit)
        # parked units whose server's measurements all finished elsewhere (re-tests) are still
        # owed: hand every parked unit to the workers, which now wait on the server limit instead
        self._parking = False
        for host in list(self._parked):
            while (unit := self._unpark(host)) is not None:
                if self.summary.stopped or self._fatal is not None:
                    break
                await queue.put(unit)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)

    def _park(self, unit: Unit) -> bool:
        """Set aside a unit whose server is at its limit, so workers stay busy with other servers.

        Without this, a run of units for one server would tie up every worker
        waiting on that server's limit (head-of-line blocking). Parked units
        are picked up by the workers finishing that server's measurements;
        at most ``PARK_FACTOR`` x concurrency are parked, then the producer
        waits as before (memory stays bounded).
        """
        if not self._parking:
            return False
        host = server_of(unit.target, unit.url)
        entry = self._servers.get(host)
        if entry is None or entry[1] < self.campaign.per_server:
            return False
        if self._parked_count >= PARK_FACTOR * self.campaign.concurrency:
            return False
        self._parked.setdefault(host, collections.deque()).append(unit)
        self._parked_count += 1
        return True

    def _unpark(self, host: str) -> Unit | None:
        parked = self._parked.get(host)
        if not parked:
            return None
        unit = parked.popleft()
        if not parked:
            del self._parked[host]
        self._parked_count -= 1
        return unit

    def stopping(self, stop: asyncio.Event) -> bool:
        """True (and the reason recorded) once no new measurement may start."""
        if stop.is_set() and not self.summary.stopped:
            self.summary.stopped = "interrupted"
        return self.summary.stopped is not None

    def finish_unit(self, unit: Unit, m: dict[str, Any]) -> None:
        """Store a first measurement, mark its unit done, ask the confirmer."""
        self._store(m, first=True)
        self.done.add(unit.key)
        if self.confirm is not None:
            self._schedule_retests(unit, m)

    async def _worker(self, queue: asyncio.Queue[Unit | None]) -> None:
        # A worker never dies early: after a fatal error (the store failed) it keeps
        # draining the queue so the producer cannot block on a full queue.
        while True:
            unit: Unit | None = await queue.get()
            if unit is None:
                return
            if self._park(unit):
                continue  # its server reached the limit while it sat in the queue
            # after each measurement, take over a unit parked for the same server
            while unit is not None and not self.summary.stopped and self._fatal is None:
                try:
                    options = self._options_cache[(unit.probe, unit.resolver)]
                    m = await self._measure(unit, options, attempt=0, annotations={})
                    self.finish_unit(unit, m)
                except Exception as e:
                    self._fatal = self._fatal or e
                unit = self._unpark(server_of(unit.target, unit.url))

    def _server_slot(self, host: str) -> Any:
        entry = self._servers.get(host)
        if entry is None:
            entry = self._servers[host] = [asyncio.Semaphore(self.campaign.per_server), 0]
        return entry

    async def _measure(self, unit: Unit, options: Any, *, attempt: int, annotations: dict[str, Any]) -> dict[str, Any]:
        module = self.modules[unit.probe]
        host = server_of(unit.target, unit.url)
        entry = self._server_slot(host)
        entry[1] += 1
        try:
            async with entry[0]:
                return await self._measure_now(module, unit, options, attempt, annotations)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._servers[host]  # bounded: only servers with work in flight are kept

    async def _measure_now(
        self, module: types.ModuleType, unit: Unit, options: Any, attempt: int, annotations: dict[str, Any]
    ) -> dict[str, Any]:
        net = self._nets.get(unit.resolver)
        if net is None:
            net = self._nets[unit.resolver] = self._net_factory(unit.resolver)
        ann = self.base_annotations(unit)
        ann.update(annotations)
        watchdog, worst = watchdog_for(module, unit.target, options)
        start = time.time()
        t0 = time.monotonic()
        control_task = (
            asyncio.create_task(self._control(unit.probe, unit.target, options)) if self.control else None
        )
        observations: list[dict[str, Any]] = []
        recorders: list[Recorder] = []

        async def measure() -> list[Any]:
            watch_recorders(recorders)  # this task's context only: the probe's recorders, for a cut-off
            return await module.measure(unit.target, net, options)

        try:
            obs = await asyncio.wait_for(measure(), watchdog)
            observations = [o.to_dict() for o in obs]
        except ConfigError:
            raise  # wrong for every target (e.g. no resolver): stop the run, exit 2
        except ProbeError as e:
            ann["probe_error"] = f"{type(e).__name__}: {e}"
        except TimeoutError:
            observations, unfinished = _partial(recorders)
            ann["runner_failure"] = GENERIC_TIMEOUT
            ann["runner_detail"] = f"probe still running after the {watchdog:.1f} s watchdog" + (
                f" (its declared worst case: {worst:.1f} s)" if worst is not None else "")
            ann["incomplete"] = True
            ann["unfinished_operations"] = unfinished
        except Exception as e:  # a bug in a probe: keep it visible (and what it saw), keep the campaign going
            log.error("probe %s crashed on %s", unit.probe, unit.target, exc_info=True)
            observations, unfinished = _partial(recorders)
            ann["probe_error"] = f"bug: {type(e).__name__}: {e}"
            ann["incomplete"] = True
            ann["unfinished_operations"] = unfinished
        runtime = time.monotonic() - t0
        control = None
        if control_task is not None:
            control, control_error = await control_task
            if control_error:
                ann["control_error"] = control_error
        return self.envelope(unit, observations, start, runtime, attempt=attempt, annotations=ann, control=control)

    def envelope(
        self, unit: Unit, observations: list[dict[str, Any]], start: float, runtime: float, *,
        attempt: int = 0, annotations: dict[str, Any], control: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The stored measurement of ``unit`` (records.build_measurement)."""
        module = self.modules[unit.probe]
        return build_measurement(
            probe=module.NAME, probe_version=getattr(module, "VERSION", "0"), input=unit.target,
            start_time=start, runtime=runtime, observations=observations, campaign=self.campaign.name,
            run_id=self.run_id, repetition=unit.repetition, attempt=attempt,
            vantage=self._vantage(unit.resolver, observations), control=control, annotations=annotations,
        )

    @staticmethod
    def base_annotations(unit: Unit) -> dict[str, Any]:
        """What every measurement of ``unit`` carries: the list entry and its category."""
        ann: dict[str, Any] = {"url": unit.url}
        if unit.category:
            ann["category_code"] = unit.category
        return ann

    async def _control(self, probe: str, target: str, options: Any) -> tuple[dict[str, Any] | None, str | None]:
        assert self.control is not None
        try:
            return await self.control.control_for(probe, target, options), None
        except Exception as e:  # a failing control must not lose the measurement itself
            return None, f"{type(e).__name__}: {e}"

    def _vantage(self, resolver: str | None, observations: list[dict[str, Any]]) -> Vantage:
        v = self.campaign.vantage
        ip = None
        if self.campaign.store_vantage_ip:
            ip = self._local_ip(observations)
        return Vantage(cc=v.cc, asn=v.asn, network=v.network, resolver=resolver, ip=ip)

    def _local_ip(self, observations: list[dict[str, Any]]) -> str | None:
        """This host's address on the route to the first peer seen (only with store_vantage_ip).

        A UDP socket's connect() picks the source address without sending a
        packet. Behind NAT this is the private address.
        """
        peer = _first_peer(observations)
        if peer is None:
            return None
        if peer not in self._local_ip_cache:
            if len(self._local_ip_cache) > 4096:
                self._local_ip_cache.clear()
            family = socket.AF_INET6 if ":" in peer else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.connect((peer, 9))
                    self._local_ip_cache[peer] = s.getsockname()[0]
            except OSError:
                self._local_ip_cache[peer] = None
        return self._local_ip_cache[peer]

    def _store(self, m: dict[str, Any], *, first: bool) -> None:
        s = self.summary
        if self.disk_guard is not None and not s.stopped:
            try:
                self.disk_guard.check(4096)
            except StoreError as e:
                s.stopped = str(e)  # stop starting new work; in-flight results still fit the reserve
        assert self.writer is not None
        self.writer.write(m)
        failure = first_failure(m)
        if first:
            s.measured += 1
        else:
            s.retests += 1
        s.per_probe[m["probe"]] += 1
        s.per_failure[failure or "ok"] += 1
        if failure:
            s.failed += 1
        if self.progress and first:
            self.progress.advance(m, failure is not None)

    # --- confirmation re-tests ------------------------------------------------
    def _schedule_retests(self, unit: Unit, m: dict[str, Any]) -> None:
        assert self.confirm is not None
        retests = self.confirm.retests(m)
        if retests:
            self._start_retests(unit, m["measurement_id"], retests, 1)

    def _start_retests(self, unit: Unit, first_id: str, retests: list[Retest], first_attempt: int) -> None:
        task = asyncio.create_task(self._run_retests(unit, first_id, retests, first_attempt))
        self._retest_tasks.add(task)
        task.add_done_callback(self._retest_tasks.discard)

    def resume_retests(self, unfinished: list[tuple[Unit, str, list[Retest], int]]) -> None:
        """Re-tests an interrupted run still owed: (unit, first measurement id, re-tests, next attempt).

        They start when ``run`` starts (see ``runs.unfinished_retests``).
        """
        self._unfinished_retests = unfinished

    async def _run_retests(self, unit: Unit, first_id: str, retests: list[Retest], first_attempt: int) -> None:
        try:
            for attempt, rt in enumerate(retests, first_attempt):
                if rt.delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), rt.delay)
                if self.stopping(self._stop) or self._fatal is not None:
                    return  # owed re-tests are run by a resume
                if rt.probe not in self.modules:
                    self.modules[rt.probe] = registry.load(rt.probe)
                options = self.options_for(rt.probe, unit.resolver, rt.options)
                runit = dataclasses.replace(
                    unit, probe=rt.probe, target=rt.target, resolver=rt.options.get("resolver", unit.resolver)
                )
                ann = {"confirms": first_id, "retest_reason": rt.reason}
                if rt.options:
                    ann["retest_options"] = rt.options
                m = await self._measure(runit, options, attempt=attempt, annotations=ann)
                self._store(m, first=False)
        except Exception as e:  # a re-test the confirmer got wrong, or the store failed: stop loudly
            self._fatal = self._fatal or e


def watchdog_for(module: types.ModuleType, target: str, options: Any) -> tuple[float, float | None]:
    """Seconds a probe may run before the runner cuts it off, and its declared worst case (None: none).

    ``max(WATCHDOG_MIN, WATCHDOG_FACTOR x timeout, WORST_CASE_MARGIN x worst_case(target, options))``.
    A ``worst_case`` that raises is a bug of the probe: logged, and the rule without it applies.
    """
    timeout = float(getattr(options, "timeout", None) or DEFAULT_PROBE_TIMEOUT)
    watchdog = max(WATCHDOG_MIN, WATCHDOG_FACTOR * timeout)
    declared = getattr(module, "worst_case", None)
    if declared is None:
        return watchdog, None
    try:
        worst = float(declared(target, options))
    except Exception:
        log.warning("worst_case of probe %s failed on %s", getattr(module, "NAME", module.__name__), target,
                    exc_info=True)
        return watchdog, None
    return max(watchdog, WORST_CASE_MARGIN * worst), worst


def _partial(recorders: list[Recorder]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a cut-off probe recorded: finished observations (stored form) and unfinished operations."""
    observations = [o for rec in recorders for o in rec.to_list()]
    unfinished = [u for rec in recorders for u in rec.unfinished()]
    return observations, unfinished


def unit_of(measurement: dict[str, Any]) -> Unit:
    """The unit a stored first measurement belongs to."""
    ann = measurement.get("annotations") or {}
    return Unit(
        probe=measurement["probe"], target=measurement["input"], repetition=int(measurement.get("repetition") or 0),
        resolver=(measurement.get("vantage") or {}).get("resolver"), url=ann.get("url", measurement["input"]),
        category=ann.get("category_code"),
    )


def _first_peer(observations: list[dict[str, Any]]) -> str | None:
    """The IP address of the first peer an observation names (``ip``, ``address`` or ``resolver``)."""
    for o in observations:
        for key in ("ip", "address", "resolver"):
            value = o.get(key)
            if not isinstance(value, str) or not value:
                continue
            try:
                host = value if key == "ip" else split_host_port(value, 53)[0]
                return str(ipaddress.ip_address(host))
            except ValueError:
                continue  # a name or a URL (DoH): not an address
    return None


def bulk_dns_options(runner: Runner) -> Any | None:
    """The dns Options when the campaign can use the bulk UDP engine, else None.

    Eligible: the only probe is the registry's ``dns``, over UDP, with explicit
    resolvers, and no control provider (controls are per measurement and async).
    """
    c = runner.campaign
    if c.probes != ["dns"] or not c.resolvers or runner.control is not None:
        return None
    module = runner.modules["dns"]
    if module.__name__ != registry.PROBES["dns"]:
        return None  # a test double: use the per-target path
    options = runner._options_cache[("dns", c.resolvers[0])]
    if getattr(options, "transport", None) != "udp":
        return None
    return options


def summary_lines(s: RunSummary) -> list[str]:
    """A human summary of a run, one fact per line."""
    rate = s.measured / s.runtime if s.runtime > 0 else 0.0
    lines = [
        f"run {s.run_id}: {s.measured} measured this time, {s.already_done} already done, "
        f"{s.planned} planned; {s.retests} re-tests; {s.failed} with failures; "
        f"{s.runtime:.1f} s ({rate:.1f}/s)",
    ]
    if s.list_stats is not None:
        ls = s.list_stats
        lines.append(f"targets: {ls.valid} valid, {ls.invalid} invalid lines skipped, {ls.duplicates} duplicates")
    lines.append("per probe: " + ", ".join(f"{k}={v}" for k, v in sorted(s.per_probe.items())) if s.per_probe
                 else "per probe: -")
    if s.per_failure:
        lines.append("outcomes: " + ", ".join(f"{k}={v}" for k, v in s.per_failure.most_common()))
    if s.stopped:
        lines.append(f"stopped early: {s.stopped}")
    lines.append(f"results: {s.path}")
    return lines

