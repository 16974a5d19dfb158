"""Start or resume one run of a campaign: run id, sidecar, done-set, runner.

This is the library behind ``censorscope run`` (and what a scheduler calls)::

    summary = await execute(campaign)                       # a new run
    summary = await execute(None, resume="RUN_ID", out=DIR)  # continue one

A new run writes ``RUN_ID.meta.json`` (campaign, list hashes, seed, status
``running``) before the first measurement, so an interrupted run can always
be resumed. A resume reads the campaign back from it, checks that the lists
are unchanged (same SHA-256), cuts a torn last line off the JSONL, rebuilds
the done-set from the JSONL and measures only what is missing: every unit is
stored exactly once over all attempts. At the end the sidecar's status
becomes ``complete`` or ``incomplete``.

Confirmation re-tests a killed run still owed are found by asking the
confirmer again about every stored first measurement (``unfinished_retests``)
and run on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import types
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from censorscope.measure.campaign import Campaign
from censorscope.measure.runner import (
    Confirmer,
    ControlProvider,
    DiskGuardLike,
    ProgressSink,
    Retest,
    Runner,
    RunSummary,
    Unit,
    unit_of,
)
from censorscope.measure.store import (
    JsonlWriter,
    StoreProblem,
    check_run_id,
    iter_measurements,
    jsonl_path,
    meta_path,
    new_run_id,
    read_meta,
    scan_done,
    truncate_torn_tail,
    write_json_atomic,
)
from censorscope.measure.targets import DEFAULT_LIST, list_sha256, resolve_list_path
from censorscope.probes.errors import ConfigError

log = logging.getLogger(__name__)

META_FORMAT = 1


def list_hashes(campaign: Campaign) -> dict[str, str]:
    """SHA-256 of every list file of ``campaign`` (a resume refuses changed lists)."""
    return {spec: list_sha256(resolve_list_path(spec)) for spec in campaign.lists}


def _meta(run_id: str, campaign: Campaign, hashes: dict[str, str], status: str, **extra: Any) -> dict[str, Any]:
    return {
        "format": META_FORMAT,
        "run_id": run_id,
        "status": status,
        "created": extra.pop("created", time.time()),
        "updated": time.time(),
        "list_sha256": hashes,
        "campaign": campaign.to_dict(),
        **extra,
    }


def unfinished_retests(path: Path, confirm: Confirmer) -> list[tuple[Unit, str, list[Retest], int]]:
    """The confirmation re-tests an interrupted run still owes.

    The confirmer is asked again about every stored first measurement; those
    that want more re-tests than the store holds (``annotations.confirms``)
    get the rest, numbered on from the last stored attempt.
    """
    def quiet(problem: StoreProblem) -> None:
        """scan_done has reported them already."""

    stored: Counter[str] = Counter()
    for m in iter_measurements(path, quiet):
        first = (m.get("annotations") or {}).get("confirms")
        if first and int(m.get("attempt") or 0) > 0:
            stored[first] += 1
    owed = []
    for m in iter_measurements(path, quiet):
        if int(m.get("attempt") or 0) != 0:
            continue
        wanted = confirm.retests(m)
        done = stored.get(m["measurement_id"], 0)
        if len(wanted) > done:
            owed.append((unit_of(m), m["measurement_id"], wanted[done:], done + 1))
    return owed


def prepare_new(campaign: Campaign) -> tuple[Campaign, str, Path]:
    """Validate and fix the seed; return (campaign, run id, out dir)."""
    campaign.validate()
    if campaign.seed is None:
        # chosen once and stored, so a resumed run walks the same order
        campaign.seed = random.SystemRandom().randrange(2**31)
    return campaign, new_run_id(), Path(campaign.out)


def load_for_resume(out: Path, run_id: str, control_token: str | None) -> tuple[Campaign, dict[str, Any]]:
    """The campaign and sidecar of run ``run_id`` in ``out``, checked against its lists."""
    check_run_id(run_id)
    meta = read_meta(out, run_id)
    campaign = Campaign.from_dict(meta["campaign"])
    campaign.out = str(out)
    if meta["campaign"].get("control_token_set"):
        if not control_token:
            raise ConfigError(f"run {run_id} used a control token: give it again (--control-token)")
        campaign.control_token = control_token
    for spec, digest in meta.get("list_sha256", {}).items():
        now = list_sha256(resolve_list_path(spec))
        if now != digest:
            name = "the default list" if spec == DEFAULT_LIST else spec
            raise ConfigError(f"{name} changed since run {run_id} started; cannot resume it exactly")
    return campaign, meta


async def execute(
    campaign: Campaign | None,
    *,
    resume: str | None = None,
    out: Path | None = None,
    control_token: str | None = None,
    stop: asyncio.Event | None = None,
    progress: ProgressSink | None = None,
    probes: Mapping[str, types.ModuleType] | None = None,
    control: ControlProvider | None = None,
    control_factory: Callable[[str, str | None], ControlProvider] | None = None,
    confirm: Confirmer | None = None,
    disk_guard: DiskGuardLike | None = None,
    on_problem: Callable[[StoreProblem], None] | None = None,
    on_start: Callable[[RunSummary], None] | None = None,
    tune: Callable[[Campaign], Campaign] | None = None,
    net_factory: Callable[[str | None], Any] | None = None,
) -> RunSummary:
    """Run ``campaign`` as a new run, or continue run ``resume`` found in ``out``.

    ``tune`` may change operational settings of a resumed campaign
    (concurrency, per-server limit); ``on_start(summary)`` is called before
    the first measurement (run id, path, planned units and list problems are
    known). Without ``control``, a campaign with a control URL gets
    ``control_factory(url, token)``. ``net_factory(resolver)`` builds the
    ``Net`` handed to probes (default ``Net``).
    """
    created = time.time()
    with contextlib.ExitStack() as stack:
        writer: JsonlWriter | None = None
        if resume is not None:
            out = out or Path(campaign.out if campaign else "results")
            campaign, meta = load_for_resume(out, resume, control_token)
            hashes = meta.get("list_sha256", {})
            created = meta.get("created", created)
            if tune is not None:
                campaign = tune(campaign)
            campaign.validate()
            run_id = resume
            path = jsonl_path(out, run_id)
            # lock first: the tail is only repaired when no other process can be writing it
            writer = stack.enter_context(JsonlWriter(path))
            cut = truncate_torn_tail(path)
            if cut:
                log.warning("%s: removed a torn last line (%d bytes) before resuming", path, cut)
            done, _ = scan_done(path, on_problem)
        else:
            if campaign is None:
                raise ConfigError("nothing to run: give a campaign or --resume RUN_ID")
            campaign, run_id, out = prepare_new(campaign)
            path = jsonl_path(out, run_id)
            done = set()
            hashes = list_hashes(campaign)
        made_control = None
        if control is None and campaign.control_url and control_factory is not None:
            control = control_factory(campaign.control_url, campaign.control_token)
            made_control = control
        if confirm is None and campaign.confirm is not None:
            from censorscope.measure.confirm import make_confirmer  # lazy: confirm imports the runner

            confirm = make_confirmer(campaign.confirm)
        runner = Runner(
            campaign, run_id, done=done, probes=probes, control=control, confirm=confirm,
            progress=progress, disk_guard=disk_guard, net_factory=net_factory,
        )
        if resume is not None and confirm is not None:
            runner.resume_retests(unfinished_retests(path, confirm))
        runner.plan()  # reads the lists (strict errors surface here), before a new run writes anything
        if writer is None:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create output directory {out}: {e.strerror}") from None
            writer = stack.enter_context(JsonlWriter(path))
        write_json_atomic(meta_path(out, run_id), _meta(run_id, campaign, hashes, "running", created=created))
        if on_start is not None:
            runner.summary.path = path
            on_start(runner.summary)
        try:
            summary = await runner.run(writer, stop)
        finally:
            if made_control is not None and hasattr(made_control, "aclose"):
                await made_control.aclose()  # the control client we made holds a connection pool
    status = "complete" if summary.complete else "incomplete"
    write_json_atomic(
        meta_path(out, run_id),
        _meta(run_id, campaign, hashes, status, created=created, units_done=summary.already_done
              + summary.measured, units_planned=summary.planned, stopped=summary.stopped),
    )
    return summary
