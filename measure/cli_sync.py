"""``censorscope sync RESULTS DEST``: copy results to central storage."""

from __future__ import annotations

from pathlib import Path

import click

from censorscope.measure.schedule import parse_duration
from censorscope.measure.sync import sync as run_sync
from censorscope.probes.errors import ConfigError


def _options(pairs: tuple[str, ...], key: str | None, port: int | None, user: str | None) -> dict[str, object]:
    opts: dict[str, object] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise ConfigError(f"--option takes KEY=VALUE, not {pair!r}")
        opts[k] = v
    if key:
        opts.update(key_filename=key, look_for_keys=False, allow_agent=False)
    if port:
        opts["port"] = port
    if user:
        opts["username"] = user
    return opts


@click.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dest")
@click.option("--prefix", help="Per-vantage folder under DEST (default: derived from this machine's id).")
@click.option("--min-age", default="60s", show_default=True, help="Skip files written more recently than this.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="SSH private key (sftp://).")
@click.option("--port", type=int, help="SSH port (sftp://).")
@click.option("--user", help="SSH user name (sftp://).")
@click.option("--option", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Extra fsspec storage option (repeatable), e.g. endpoint_url=… for s3.")
def sync(results: Path, dest: str, prefix: str | None, min_age: str, key: str | None, port: int | None,
         user: str | None, pairs: tuple[str, ...]) -> None:
    """Copy finished results under RESULTS to DEST/PREFIX (file://, sftp://, s3://, gs:// …).

    Idempotent (nothing is sent twice), resumable after an interruption, and
    verified by SHA-256 before a file is put in place.
    """
    report = run_sync(
        results, dest, prefix=prefix, storage_options=_options(pairs, key, port, user),
        min_age=parse_duration(min_age), progress=lambda what, rel: click.echo(f"{what} {rel}"),
    )
    click.echo(
        f"sent {len(report.uploaded)} file(s) ({report.bytes_sent} bytes), {len(report.skipped)} already there, "
        f"{len(report.resumed)} resumed, {len(report.waiting)} still being written"
    )
