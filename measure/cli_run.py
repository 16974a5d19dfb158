"""``censorscope run``: measure a campaign (a TOML file and/or flags) into a JSONL run file.

Thin layer over ``censorscope.measure.runs.execute``. Flags override the
campaign file. Ctrl-C (or SIGTERM) stops starting new measurements, lets those
in flight be stored, and prints how to resume; a second Ctrl-C abandons the
measurements in flight (what is stored stays intact either way).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import click

from censorscope.measure.campaign import DEFAULT_OUT, Campaign, load_campaign
from censorscope.measure.cli_progress import BarProgress, LogProgress
from censorscope.measure.runner import ControlProvider, RunSummary, summary_lines
from censorscope.measure.runs import execute
from censorscope.measure.store import StoreProblem
from censorscope.measure.targets import DEFAULT_LIST
from censorscope.probes.errors import ConfigError

#: flags that define *what* a run measures: not allowed with --resume (the run's campaign is fixed)
_FIXED_ON_RESUME = (
    "campaign_file", "lists", "probes", "repeat", "seed", "resolvers", "strict", "timeout", "cc", "asn",
    "network", "store_vantage_ip", "control",
)
MAX_SHOWN_PROBLEMS = 20
#: module providing the control-helper client (``make_control_provider(url, token)``)
CONTROL_CLIENT = "censorscope.measure.control"


class OneLineUsage(click.Command):
    """Usage errors as one line (``Error: ...``) with exit code 2, like ConfigError."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            if isinstance(e, click.NoSuchOption | click.BadParameter | click.MissingParameter | click.BadOptionUsage):
                raise _UsageLine(e.format_message()) from None
            raise


class _UsageLine(click.ClickException):
    exit_code = 2


def _control_provider(url: str, token: str | None) -> ControlProvider:
    from censorscope.measure.control import make_control_provider  # lazy: httpx only when used

    return make_control_provider(url, token)


def _split_probes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [p.strip() for p in value.split(",") if p.strip()]
    if not names:
        raise ConfigError("--probe: no probe named")
    return names


def _campaign_from(params: dict[str, Any]) -> Campaign:
    campaign = load_campaign(params["campaign_file"]) if params["campaign_file"] else Campaign()
    return campaign.override(
        # absolute, so that a resume from another directory finds the same files
        lists=[s if s == DEFAULT_LIST else str(Path(s).absolute()) for s in params["lists"]] or None,
        probes=_split_probes(params["probes"]),
        out=params["out"],
        concurrency=params["concurrency"],
        per_server=params["per_server"],
        repeat=params["repeat"],
        timeout=params["timeout"],
        seed=params["seed"],
        resolvers=list(params["resolvers"]) or None,
        strict=params["strict"],
        store_vantage_ip=params["store_vantage_ip"],
        cc=params["cc"], asn=params["asn"], network=params["network"],
        control_url=params["control"],
        control_token=params["control_token"],
    )


def _install_signals(stop: asyncio.Event, task: asyncio.Task[Any], progress: Any) -> None:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()  # second signal: give up on the measurements in flight
            return
        stop.set()
        progress.note("stopping: finishing the measurements in flight (Ctrl-C again to abandon them)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


async def _main(campaign: Campaign | None, params: dict[str, Any], progress: Any) -> RunSummary:
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None
    _install_signals(stop, task, progress)

    def on_start(s: RunSummary) -> None:
        progress.note(f"run {s.run_id}: writing {s.path}")
        stats = s.list_stats
        if stats is not None and stats.invalid:
            for p in stats.problems[:MAX_SHOWN_PROBLEMS]:
                progress.note(f"warning: {p} (skipped)")
            more = stats.invalid - min(len(stats.problems), MAX_SHOWN_PROBLEMS)
            if more:
                progress.note(f"warning: ... and {more} more invalid lines (see `censorscope lists show`)")

    def on_problem(p: StoreProblem) -> None:
        progress.note(f"warning: {p} (skipped)")

    def tune(c: Campaign) -> Campaign:
        return c.override(concurrency=params["concurrency"], per_server=params["per_server"])

    return await execute(
        campaign, resume=params["resume"], out=Path(params["out"] or DEFAULT_OUT) if params["resume"] else None,
        control_token=params["control_token"], stop=stop, progress=progress, control_factory=_control_provider,
        on_problem=on_problem, on_start=on_start, tune=tune,
    )


@click.command(cls=OneLineUsage)
@click.argument("campaign_file", required=False, type=click.Path(dir_okay=False), metavar="[CAMPAIGN.toml]")
@click.option("--list", "lists", multiple=True, metavar="FILE|default",
              help="Target list (plain or Citizen Lab CSV); 'default' = the shipped list. Repeatable.")
@click.option("--probe", "probes", metavar="NAME[,NAME...]", help="Probes to run [default: web].")
@click.option("--out", metavar="DIR", help=f"Output directory [default: ./{DEFAULT_OUT}].")
@click.option("--concurrency", type=int, metavar="N", help="Measurements in flight at once [default: 32].")
@click.option("--per-server", type=int, metavar="N", help="At most N at once against one host [default: 4].")
@click.option("--repeat", type=int, metavar="N", help="Repetitions of every measurement [default: 1].")
@click.option("--timeout", type=float, metavar="S", help="Per-operation timeout given to probes (seconds).")
@click.option("--seed", type=int, metavar="N", help="Shuffle seed (default: random, stored with the run).")
@click.option("--resolver", "resolvers", multiple=True, metavar="IP[:PORT]",
              help="DNS resolver for probes that take one; repeat to measure each. No default.")
@click.option("--cc", metavar="CC", help="Vantage country code (ISO 3166 alpha-2), stored with each measurement.")
@click.option("--asn", metavar="ASN", help="Vantage network's AS number, e.g. AS64500.")
@click.option("--network", metavar="NAME", help="Vantage network name (ISP).")
@click.option("--store-vantage-ip", is_flag=True, default=None,
              help="Store this host's own IP address (never stored otherwise).")
@click.option("--strict", is_flag=True, default=None, help="Invalid list lines are fatal (exit 2).")
@click.option("--control", metavar="URL", help="Control helper (censorscope helper serve) to ask for controls.")
@click.option("--control-token", metavar="T", envvar="CENSORSCOPE_CONTROL_TOKEN",
              help="Token for the control helper (or $CENSORSCOPE_CONTROL_TOKEN).")
@click.option("--resume", metavar="RUN_ID", help="Continue an interrupted run found in --out.")
def run(**params: Any) -> None:
    """Measure every target of a campaign with the chosen probes.

    Results go to OUT/RUN_ID.jsonl (one measurement per line) with
    OUT/RUN_ID.meta.json beside it. An interrupted run (Ctrl-C, crash, kill)
    is continued with --resume RUN_ID: every (target, probe, repetition) is
    measured exactly once overall.

    Targets are real sites only if you list them: measuring can carry legal
    risk in some countries; know the law where your vantage point is.
    """
    if params["resume"]:
        given = [k for k in _FIXED_ON_RESUME if params[k] not in (None, (), False)]
        if given:
            names = ", ".join("CAMPAIGN.toml" if k == "campaign_file" else "--" + k.rstrip("s").replace("_", "-")
                              for k in given)
            raise ConfigError(f"--resume continues a run with its own campaign; drop {names}")
        campaign = None
    else:
        campaign = _campaign_from(params).validate()
    progress: Any = BarProgress() if sys.stderr.isatty() else LogProgress()
    try:
        summary = asyncio.run(_main(campaign, params, progress))
    except asyncio.CancelledError:
        raise click.ClickException("abandoned the measurements in flight; what was stored is intact") from None
    finally:
        progress.close()
    for line in summary_lines(summary):
        click.echo(line)
    if not summary.complete:
        out = Path(params["out"] or (campaign.out if campaign else DEFAULT_OUT))
        click.echo(f"incomplete: continue with `censorscope run --resume {summary.run_id} --out {out}`", err=True)
        sys.exit(1)
