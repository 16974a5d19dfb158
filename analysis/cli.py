"""``censorscope report`` and ``censorscope export``: thin commands over the analysis library.

``report RESULTS…`` judges measurements (JSONL/Parquet files or directories,
OONI files too) and prints the verdict table: a human table with totals by
default, ``--json`` one object per line with the verdict columns, ``--csv``
the same columns as CSV, ``--html FILE`` a self-contained page with plots. Unreadable (torn) lines are skipped and reported on
stderr. ``export`` writes measurements as Parquet, CSV or OONI's format.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

VERDICT_STYLES = {"ok": "green", "down": "yellow", "blocked": "bold red", "inconclusive": "dim"}


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    # a pipe or file gets wide lines rather than words folded at 80 columns
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(show_lines=False, expand=True)
    for name, kw in (("input", {"overflow": "fold", "ratio": 3}), ("probe", {}), ("verdict", {}),
                     ("method", {"no_wrap": True}), ("confidence", {"justify": "right"}),
                     ("evidence", {"overflow": "fold", "ratio": 6})):
        table.add_column(name, **kw)
    for r in rows:
        style = VERDICT_STYLES.get(r["verdict"], "")
        table.add_row(r["input"], r["probe"], f"[{style}]{r['verdict']}[/]", r["method"] or "",
                      f"{r['confidence']:.2f}", r["evidence"])
    console.print(table)
    counts = Counter(r["verdict"] for r in rows)
    totals = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICT_STYLES)
    console.print(f"{len(rows)} verdicts: {totals}")


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line with the verdict columns.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with the verdict columns.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML report (summary, tables, plots) to this file.")
def report(results: tuple[Path, ...], as_json: bool, as_csv: bool, html_out: Path | None) -> None:
    """Judge stored measurements and print one verdict per input and probe.

    RESULTS are run files (JSONL, Parquet, OONI JSON/JSONL) or directories of
    them. Verdicts: ok, down (the control failed too), blocked (with the
    method and the evidence) or inconclusive. Rules: docs/verdicts.md.
    """
    from censorscope.analysis.verdicts.engine import COLUMNS, verdict_rows
    from censorscope.analysis.verdicts.load import LoadReport

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    load = LoadReport()
    rows = verdict_rows(list(results), load)
    for problem in load.problems:
        click.echo(f"skipped: {problem}", err=True)
    if html_out is not None:
        import pandas as pd

        from censorscope.analysis.report_html import render

        html_out.write_text(render(pd.DataFrame(rows), title=f"censorscope report: {', '.join(map(str, results))}"))
        click.echo(f"wrote {html_out}", err=True)
    if as_json:
        for r in rows:
            click.echo(json.dumps({k: r[k] for k in COLUMNS}, ensure_ascii=False))
    elif as_csv:
        w = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        if not rows:
            click.echo("no measurements found")
            return
        _print_table(rows)


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "ooni"]), required=True,
              help="parquet: a date-partitioned dataset (OUT is a directory); csv: the measurements table; "
                   "ooni: one OONI measurement per line.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Output file or directory.")
def export(results: tuple[Path, ...], fmt: str, out: Path) -> None:
    """Export stored measurements (RESULTS: files or directories) to Parquet, CSV or OONI's format."""
    from censorscope.analysis.export import export as do_export

    problems: list[str] = []
    n = do_export(list(results), fmt, out, problems.append)
    for p in problems:
        click.echo(f"skipped: {p}", err=True)
    click.echo(f"exported {n} measurements to {out} ({fmt})")
