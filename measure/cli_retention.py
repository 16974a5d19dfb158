"""``censorscope gc RESULTS --keep 90d``: compact old raw runs into the Parquet archive."""

from __future__ import annotations

from pathlib import Path

import click

from censorscope.measure.retention import gc as run_gc
from censorscope.measure.schedule import parse_duration


@click.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--keep", default="90d", show_default=True,
              help="Keep raw JSONL runs written within this long (e.g. 30d, 12h).")
def gc(results: Path, keep: str) -> None:
    """Compact JSONL runs older than --keep into RESULTS/parquet (partitioned by date).

    Every Parquet file is read back and compared row by row with its JSONL
    source; only then is the raw file deleted. Runs still being written, and
    files with corrupt lines, are left alone and reported.
    """
    report = run_gc(results, parse_duration(keep), progress=click.echo)
    for name in report.kept_busy:
        click.echo(f"{name}: a run is writing it, left alone")
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(f"compacted {len(report.compacted)} run(s), {report.rows} measurement(s)")
    if report.kept_corrupt:
        raise SystemExit(1)
