"""HTB classes on the censor's egress interfaces (for ``throttle``).

The root is ``htb`` with handle 1: and default class 1:1 (unlimited, so
unclassified traffic is untouched); each throttle instance adds its own class.
Commands run in the censor's namespace (the daemon's own).
"""

from __future__ import annotations

import subprocess

ROOT_RATE = "10gbit"


def _tc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=check)


def _has_htb_root(dev: str) -> bool:
    out = _tc("qdisc", "show", "dev", dev).stdout
    return any(line.startswith("qdisc htb 1: root") for line in out.splitlines())


def add_class(dev: str, classid: str, rate: str) -> None:
    """Create (or replace) class ``classid`` limited to ``rate`` on ``dev``, creating the root if needed."""
    if not _has_htb_root(dev):
        _tc("qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1")
        _tc("class", "replace", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", ROOT_RATE,
            "quantum", "60000")
    _tc("class", "replace", "dev", dev, "parent", "1:", "classid", classid, "htb", "rate", rate, "ceil", rate)


def remove_class(dev: str, classid: str) -> None:
    """Delete ``classid``; delete the root when only the default class remains. Never raises."""
    try:
        _tc("class", "del", "dev", dev, "classid", classid, check=False)
        classes = [ln for ln in _tc("class", "show", "dev", dev, check=False).stdout.splitlines() if ln.strip()]
        if all(" 1:1 " in ln for ln in classes):
            _tc("qdisc", "del", "dev", dev, "root", check=False)
    except OSError:
        pass
