"""``censorscope schedule …`` and ``censorscope daemon``: unattended measurement.

- ``schedule install CAMPAIGN.toml --every 6h [--jitter 10m]`` writes a systemd
  service + timer (or, with ``--cron``, prints a crontab line);
- ``schedule list`` / ``schedule remove`` manage installed timers;
- ``schedule tick`` runs the campaign if a slot is due (what the units and
  cron call; safe to call at any time);
- ``daemon`` does the same in-process, forever, for hosts without systemd.

All paths share one run lock and one state file per campaign, so the timer,
cron and the daemon never run one campaign twice at once.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from censorscope.measure.daemon import RunOutcome, ScheduledCampaign, log_event
from censorscope.measure.diskguard import DiskGuard
from censorscope.measure.schedule import Schedule, parse_duration
from censorscope.measure.units import (
    UNIT_PREFIX,
    UnitSpec,
    cron_line,
    needs_raw_sockets,
    render_service,
    render_timer,
    unit_name,
)
from censorscope.probes.errors import ConfigError

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")


if TYPE_CHECKING:
    from censorscope.measure.campaign import Campaign


def _campaign_paths(campaign_file: Path) -> tuple[Campaign, Path]:
    from censorscope.measure.campaign import load_campaign

    campaign = load_campaign(campaign_file)
    out = Path(campaign.out)
    if not out.is_absolute():
        out = (campaign_file.parent / out).resolve()
    return campaign, out


def _state_dir(out: Path, state_dir: Path | None) -> Path:
    return (state_dir or out / ".schedule").resolve()


def _schedule(campaign_file: Path, every: str, jitter: str) -> Schedule:
    return Schedule(unit_name(campaign_file).removeprefix(UNIT_PREFIX), parse_duration(every), parse_duration(jitter))


def _runner(campaign_file: Path):  # noqa: ANN202 - returns the CampaignRun callable
    from censorscope.measure.control import make_control_provider
    from censorscope.measure.runs import execute

    campaign, out = _campaign_paths(campaign_file)

    async def run(resume: str | None, stop: asyncio.Event) -> RunOutcome:
        summary = await execute(
            None if resume else campaign, resume=resume, out=out, stop=stop, disk_guard=DiskGuard(out),
            control_factory=make_control_provider,
            on_start=lambda s: log_event("run_file", run_id=s.run_id, path=str(s.path), planned=s.planned),
        )
        if summary.stopped:
            log_event("run_stopped", run_id=summary.run_id, reason=summary.stopped)
        return RunOutcome(run_id=summary.run_id, complete=summary.complete)

    return run, out


def _scheduled(campaign_file: Path, every: str, jitter: str, state_dir: Path | None) -> ScheduledCampaign:
    run, out = _runner(campaign_file)
    return ScheduledCampaign(_schedule(campaign_file, every, jitter), _state_dir(out, state_dir), run)


def _with_signals(coro_factory) -> None:  # noqa: ANN001 - a callable taking the stop event
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())


@click.group()
def schedule() -> None:
    """Run a campaign every few hours, unattended (systemd timer or cron)."""


campaign_arg = click.argument("campaign", type=click.Path(exists=True, dir_okay=False, path_type=Path))
every_opt = click.option("--every", required=True, help="Interval, e.g. 6h, 30m, 1d.")
jitter_opt = click.option("--jitter", default="0s", show_default=True, help="Random delay added to each run.")
state_opt = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                         help="Lock and schedule state (default: RESULTS/.schedule).")


@schedule.command("install")
@campaign_arg
@every_opt
@jitter_opt
@click.option("--user", help="Run as this user (default: root).")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_UNIT_DIR,
              show_default=True, help="Where to write the units.")
@state_opt
@click.option("--cron", is_flag=True, help="Print an equivalent crontab line instead (hosts without systemd).")
def install(campaign: Path, every: str, jitter: str, user: str | None, unit_dir: Path,
            state_dir: Path | None, cron: bool) -> None:
    """Install a systemd service + timer running CAMPAIGN every interval.

    The timer catches up a run missed while the machine was off (once), adds
    up to --jitter of random delay, and the service runs sandboxed with only
    the results directory writable.
    """
    campaign = campaign.resolve()
    c, out = _campaign_paths(campaign)
    spec = UnitSpec(
        campaign=campaign, every=parse_duration(every), jitter=parse_duration(jitter), results_dir=out,
        state_dir=_state_dir(out, state_dir), user=user,
        # `python -m censorscope` is immune to PATH differences between a shell and systemd
        command=(sys.executable, "-m", "censorscope"),
        needs_raw_sockets=needs_raw_sockets(c.probes),
    )
    _schedule(campaign, every, jitter)  # validates interval and jitter
    if cron:
        click.echo(cron_line(spec))
        return
    service = render_service(spec)
    timer = render_timer(spec)
    name = unit_name(campaign)
    unit_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / f"{name}.service").write_text(service)
    (unit_dir / f"{name}.timer").write_text(timer)
    click.echo(f"wrote {unit_dir / (name + '.service')} and {unit_dir / (name + '.timer')}")
    if unit_dir == DEFAULT_UNIT_DIR and Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "enable", "--now", f"{name}.timer"], check=True)
        click.echo(f"enabled {name}.timer")
    else:
        click.echo(f"to activate: systemctl daemon-reload && systemctl enable --now {name}.timer")


def _installed(unit_dir: Path) -> list[Path]:
    return sorted(unit_dir.glob(f"{UNIT_PREFIX}*.timer"))


@schedule.command("list")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_UNIT_DIR,
              show_default=True)
def list_(unit_dir: Path) -> None:
    """List installed censorscope timers with their schedule."""
    timers = _installed(unit_dir)
    if not timers:
        click.echo(f"no censorscope timers in {unit_dir}")
        return
    for t in timers:
        text = t.read_text()
        cal = next((ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("OnCalendar=")), "?")
        jit = next((ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("RandomizedDelaySec=")), "0")
        click.echo(f"{t.stem}\t{cal}\tjitter {jit}s")


@schedule.command("remove")
@click.argument("name")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_UNIT_DIR,
              show_default=True)
def remove(name: str, unit_dir: Path) -> None:
    """Remove the timer and service NAME (as shown by `schedule list`, or the campaign file)."""
    if name.endswith(".toml"):
        name = unit_name(Path(name))
    if not name.startswith(UNIT_PREFIX):
        name = UNIT_PREFIX + name
    files = [unit_dir / f"{name}.timer", unit_dir / f"{name}.service"]
    if not any(f.exists() for f in files):
        raise ConfigError(f"no timer {name} in {unit_dir}")
    if unit_dir == DEFAULT_UNIT_DIR and Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", f"{name}.timer"], check=False)
    for f in files:
        f.unlink(missing_ok=True)
    click.echo(f"removed {name}")


@schedule.command("tick")
@campaign_arg
@every_opt
@jitter_opt
@state_opt
@click.option("--force", is_flag=True, help="Run for the current slot now (the systemd timer already chose the time).")
def tick(campaign: Path, every: str, jitter: str, state_dir: Path | None, force: bool) -> None:
    """Run CAMPAIGN once if a slot is due (idempotent; what timers and cron call)."""
    sc = _scheduled(campaign.resolve(), every, jitter, state_dir)
    _with_signals(lambda stop: sc.tick(stop, force=force))


@click.command()
@campaign_arg
@every_opt
@jitter_opt
@state_opt
def daemon(campaign: Path, every: str, jitter: str, state_dir: Path | None) -> None:
    """Run CAMPAIGN every interval, in-process (containers, hosts without systemd).

    A run missed while the daemon was down happens once when it returns; two
    runs of one campaign never overlap; SIGTERM lets the measurements in
    flight finish and be stored, then exits 0 (the run is resumed next time).
    Logs one JSON line per event on stdout.
    """
    sc = _scheduled(campaign.resolve(), every, jitter, state_dir)
    _with_signals(sc.forever)
