"""systemd units and crontab lines for scheduled campaigns.

``render_units`` writes a oneshot service that runs the campaign and a timer
that fires it on calendar slots (``OnCalendar``), with ``Persistent=true`` so a
run missed while the machine was off happens once when it returns, and
``RandomizedDelaySec`` for jitter. systemd's ``Persistent=`` only works with
``OnCalendar=``, so an interval must map onto a calendar expression: minutes
dividing an hour, hours dividing a day, or whole days of 1 or 7.

The service is sandboxed: no new privileges, the whole file system read-only
(``ProtectSystem=strict``) except the results directory and the schedule
state directory, private /tmp, and no capabilities unless a probe needs raw
sockets (``CAP_NET_RAW``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from censorscope.measure.schedule import format_duration
from censorscope.probes.errors import ConfigError

UNIT_PREFIX = "censorscope-"


def needs_raw_sockets(probes: list[str]) -> bool:
    """True when a probe of the campaign declares ``NEEDS_RAW_SOCKETS = True`` (it then gets CAP_NET_RAW)."""
    from censorscope.probes import registry

    return any(getattr(registry.load(name), "NEEDS_RAW_SOCKETS", False) for name in probes)


def unit_name(campaign: Path) -> str:
    """``censorscope-<campaign file stem>``, reduced to characters systemd accepts."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", campaign.stem).strip("-") or "campaign"
    return UNIT_PREFIX + stem


def on_calendar(every: int) -> str:
    """The ``OnCalendar=`` expression for an interval in seconds (UTC slots)."""
    if every % 60:
        raise ConfigError("the interval must be whole minutes")
    minutes = every // 60
    if minutes < 60 and 60 % minutes == 0:
        return f"*-*-* *:00/{minutes}:00 UTC"
    if every % 3600 == 0 and every <= 86400 and 24 % (every // 3600) == 0:
        hours = every // 3600
        return "*-*-* 00:00:00 UTC" if hours == 24 else f"*-*-* 00/{hours}:00:00 UTC"
    if every == 7 * 86400:
        return "Mon *-*-* 00:00:00 UTC"
    raise ConfigError(
        f"interval {format_duration(every)} does not map onto calendar slots "
        "(use minutes dividing an hour, hours dividing a day, 1d or 7d)"
    )


def cron_expression(every: int) -> str:
    """A crontab time field that fires at least as often as needed to notice a due slot."""
    minutes = every // 60
    # `schedule tick` decides whether a run is due; cron only has to wake it often enough.
    step = min(15, minutes) if minutes >= 1 else 1
    while 60 % step:
        step -= 1
    return f"*/{step} * * * *"


@dataclass(frozen=True)
class UnitSpec:
    """Everything a pair of units needs."""

    campaign: Path
    every: int
    jitter: int
    results_dir: Path
    state_dir: Path
    command: tuple[str, ...]  # how to invoke censorscope, e.g. (python, "-m", "censorscope")
    user: str | None = None
    needs_raw_sockets: bool = False


def render_service(spec: UnitSpec) -> str:
    """The ``.service`` unit text."""
    cmd = " ".join(
        shlex.quote(a) for a in (*spec.command, "schedule", "tick", str(spec.campaign), "--every",
                                 format_duration(spec.every), "--jitter", "0s", "--force",
                                 "--state-dir", str(spec.state_dir))
    )
    lines = [
        "[Unit]",
        f"Description=censorscope campaign {spec.campaign.name}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={cmd}",
    ]
    if spec.user:
        lines.append(f"User={spec.user}")
    lines += [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={spec.results_dir} {spec.state_dir}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK"
        + (" AF_PACKET" if spec.needs_raw_sockets else ""),
        "LockPersonality=yes",
        "RestrictRealtime=yes",
    ]
    if spec.needs_raw_sockets:
        lines += ["CapabilityBoundingSet=CAP_NET_RAW", "AmbientCapabilities=CAP_NET_RAW"]
    else:
        lines += ["CapabilityBoundingSet="]
    # A campaign must never run for longer than its interval (the next slot would overlap).
    lines.append(f"TimeoutStartSec={spec.every}")
    lines.append("KillSignal=SIGTERM")
    return "\n".join(lines) + "\n"


def render_timer(spec: UnitSpec) -> str:
    """The ``.timer`` unit text."""
    name = unit_name(spec.campaign)
    lines = [
        "[Unit]",
        f"Description=censorscope campaign {spec.campaign.name} every {format_duration(spec.every)}",
        "",
        "[Timer]",
        f"OnCalendar={on_calendar(spec.every)}",
        "Persistent=true",
        f"RandomizedDelaySec={spec.jitter}",
        "AccuracySec=1s",
        f"Unit={name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return "\n".join(lines) + "\n"


def cron_line(spec: UnitSpec) -> str:
    """A crontab line with the same semantics, for hosts without systemd.

    cron wakes ``schedule tick`` every few minutes; tick runs the campaign only
    when a slot is due (catch-up once, jitter, a lock against overlap).
    """
    cmd = " ".join(
        shlex.quote(a) for a in (*spec.command, "schedule", "tick", str(spec.campaign), "--every",
                                 format_duration(spec.every), "--jitter", format_duration(spec.jitter),
                                 "--state-dir", str(spec.state_dir))
    )
    return f"{cron_expression(spec.every)} {cmd} >> {shlex.quote(str(spec.state_dir / 'cron.log'))} 2>&1"
