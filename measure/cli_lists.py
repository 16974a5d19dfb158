"""``censorscope lists``: inspect target lists before measuring them."""

from __future__ import annotations

import json

import click

from censorscope.measure.cli_run import OneLineUsage
from censorscope.measure.targets import DEFAULT_LIST, resolve_list_path, scan_targets


@click.group()
def lists() -> None:
    """Inspect target lists (plain lists or Citizen Lab CSV; 'default' is the shipped list)."""


@lists.command("show", cls=OneLineUsage)
@click.argument("file", metavar="FILE|default")
@click.option("--strict", is_flag=True, help="Stop at the first invalid line (exit 2).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def show(file: str, strict: bool, as_json: bool) -> None:
    """Count a list's targets per category and report its invalid lines (FILE:LINE: reason).

    Nothing is fetched or resolved: this only reads the file.
    """
    path = resolve_list_path(file)
    stats = scan_targets([file], strict=strict)
    if as_json:
        click.echo(json.dumps({
            "file": file if file == DEFAULT_LIST else str(path),
            "valid": stats.valid, "invalid": stats.invalid, "duplicates": stats.duplicates,
            "categories": dict(stats.categories.most_common()),
            "problems": [str(p) for p in stats.problems],
        }, ensure_ascii=False))
        return
    click.echo(f"{file}: {stats.valid} targets, {stats.invalid} invalid lines, {stats.duplicates} duplicates")
    if stats.categories:
        width = max(len(c) for c in stats.categories)
        click.echo("per category:")
        for code, n in stats.categories.most_common():
            click.echo(f"  {code:<{width}}  {n}")
    if stats.problems:
        click.echo("invalid lines (skipped):")
        for p in stats.problems:
            click.echo(f"  {p}")
        hidden = stats.invalid - len(stats.problems)
        if hidden:
            click.echo(f"  ... and {hidden} more")
