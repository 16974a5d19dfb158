"""The ``censorscope`` command line: a thin layer over the library.

Each command lives in its own module and is imported only when used, so
``censorscope --help`` stays fast and a command's heavy dependencies (pandas,
scapy) load only for it. Exit codes: 0 success, 1 runtime error, 2 usage
error; a ``CensorscopeError`` prints one line, never a traceback.
"""

from __future__ import annotations

import importlib

import click

from censorscope import __version__
from censorscope.probes.errors import CensorscopeError

#: command name -> "module:attribute" of its click command
COMMANDS: dict[str, str] = {
    "probe": "censorscope.measure.cli_probe:probe",
    "run": "censorscope.measure.cli_run:run",
    "lists": "censorscope.measure.cli_lists:lists",
    "helper": "censorscope.measure.cli_helper:helper",
    "schedule": "censorscope.measure.cli_schedule:schedule",
    "daemon": "censorscope.measure.cli_schedule:daemon",
    "gc": "censorscope.measure.cli_retention:gc",
    "sync": "censorscope.measure.cli_sync:sync",
    "report": "censorscope.analysis.cli:report",
    "export": "censorscope.analysis.cli:export",
    "lab": "censorscope.lab.cli:lab",
}


def load_command(name: str) -> click.Command:
    """Import the command registered as ``name``."""
    module, _, attr = COMMANDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


class CliError(click.ClickException):
    """A CensorscopeError shown as one line, with the error's exit code."""

    def __init__(self, error: CensorscopeError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, and which turns
    ``CensorscopeError`` into a one-line message with its exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return load_command(cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CensorscopeError as e:
            raise CliError(e) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="censorscope")
def cli() -> None:
    """censorscope: measure network censorship of websites and VPN protocols.

    Measuring censorship can carry legal risk in some countries: know the law
    where your vantage point is before you run probes. The vantage's own IP
    address is not stored unless you ask for it.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="censorscope")
