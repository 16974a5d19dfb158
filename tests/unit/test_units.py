"""Generated systemd units are valid (systemd-analyze verify) and carry the promised settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from censorscope.measure.units import (
    UnitSpec,
    cron_expression,
    cron_line,
    on_calendar,
    render_service,
    render_timer,
    unit_name,
)
from censorscope.probes.errors import ConfigError


def _spec(tmp_path: Path, **kw) -> UnitSpec:
    camp = tmp_path / "my campaign.toml"
    camp.write_text("")
    base = dict(campaign=camp, every=6 * 3600, jitter=600, results_dir=tmp_path / "results",
                state_dir=tmp_path / "state", command=("/bin/true",))
    base.update(kw)
    return UnitSpec(**base)


def test_on_calendar_maps_only_calendar_friendly_intervals():
    assert on_calendar(6 * 3600) == "*-*-* 00/6:00:00 UTC"
    assert on_calendar(15 * 60) == "*-*-* *:00/15:00 UTC"
    assert on_calendar(86400) == "*-*-* 00:00:00 UTC"
    assert on_calendar(7 * 86400) == "Mon *-*-* 00:00:00 UTC"
    for bad in (5 * 3600, 7 * 60, 2 * 86400, 90):
        with pytest.raises(ConfigError):
            on_calendar(bad)


def test_unit_name_is_safe(tmp_path: Path):
    assert unit_name(Path("/x/my campaign.toml")) == "censorscope-my-campaign"


def test_service_and_timer_settings(tmp_path: Path):
    spec = _spec(tmp_path)
    svc = render_service(spec)
    tmr = render_timer(spec)
    assert "Persistent=true" in tmr and "RandomizedDelaySec=600" in tmr
    assert "OnCalendar=*-*-* 00/6:00:00 UTC" in tmr
    assert "NoNewPrivileges=yes" in svc and "ProtectSystem=strict" in svc
    assert f"ReadWritePaths={spec.results_dir} {spec.state_dir}" in svc
    assert "CapabilityBoundingSet=\n" in svc and "CAP_NET_RAW" not in svc
    raw = render_service(_spec(tmp_path, needs_raw_sockets=True, user="probe"))
    assert "AmbientCapabilities=CAP_NET_RAW" in raw and "User=probe" in raw


@pytest.mark.parametrize("raw", [False, True])
def test_units_pass_systemd_analyze_verify(tmp_path: Path, raw: bool):
    assert shutil.which("systemd-analyze"), "ci/apt-packages.txt installs systemd"
    spec = _spec(tmp_path, needs_raw_sockets=raw)
    name = unit_name(spec.campaign)
    (tmp_path / f"{name}.service").write_text(render_service(spec))
    (tmp_path / f"{name}.timer").write_text(render_timer(spec))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"{tmp_path}/{name}.service", f"{tmp_path}/{name}.timer"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "Unknown key" not in r.stderr and "ignoring" not in r.stderr.lower(), r.stderr


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path):
    """The verification above can fail: a bad calendar spec is refused."""
    spec = _spec(tmp_path)
    name = unit_name(spec.campaign)
    (tmp_path / f"{name}.service").write_text(render_service(spec))
    (tmp_path / f"{name}.timer").write_text(render_timer(spec).replace("00/6:00:00", "nonsense"))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", f"{tmp_path}/{name}.timer"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_raw_socket_need_comes_from_the_probe_modules(monkeypatch):
    import types

    from censorscope.measure import units
    from censorscope.probes import registry

    fake = types.ModuleType("rawprobe")
    fake.NEEDS_RAW_SOCKETS = True
    real_load = registry.load
    monkeypatch.setattr(registry, "load", lambda name: fake if name == "rawprobe" else real_load(name))
    assert units.needs_raw_sockets(["tcp", "rawprobe"]) is True
    assert units.needs_raw_sockets(["tcp", "web"]) is False


def test_cron_line(tmp_path: Path):
    spec = _spec(tmp_path)
    line = cron_line(spec)
    assert line.startswith("*/15 * * * * /bin/true schedule tick ")
    assert "--every 6h --jitter 10m" in line
    assert cron_expression(5 * 60) == "*/5 * * * *"
