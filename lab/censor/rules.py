"""The censor's iptables rules, in its own chains, installed and removed atomically-ish.

Each table the censor uses gets a chain named ``CENSORSCOPE`` hooked first into
one built-in chain: filter/FORWARD (the NFQUEUE rules: only what behaviours ask
for is queued; no ``--queue-bypass``, so a dead censor blocks traffic instead of
silently letting it through), nat/PREROUTING (REDIRECTs) and mangle/POSTROUTING
(CONNMARK and CLASSIFY). ``install`` first removes any previous copy (so it is
idempotent), then loads each family's rules with one ``iptables-restore
--noflush``; ``remove`` deletes the hooks and chains and never raises.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from .behaviours.base import Rule

CHAIN = "CENSORSCOPE"
HOOKS = {"filter": "FORWARD", "nat": "PREROUTING", "mangle": "POSTROUTING"}
TOOLS = {4: "iptables", 6: "ip6tables"}


def ruleset(queue_rules: Iterable[Rule], kernel_rules: Iterable[Rule], queue_num: int) -> dict[int, list[Rule]]:
    """Per family, the de-duplicated rules in order (queue rules get the NFQUEUE target)."""
    out: dict[int, list[Rule]] = {4: [], 6: []}
    seen: set[tuple[int, str, tuple[str, ...]]] = set()
    target = ("-j", "NFQUEUE", "--queue-num", str(queue_num))
    rules = [Rule(r.table, (*r.args, *target), r.family) for r in queue_rules] + list(kernel_rules)
    for r in rules:
        for fam in (4, 6) if r.family is None else (r.family,):
            key = (fam, r.table, r.args)
            if key not in seen:
                seen.add(key)
                out[fam].append(r)
    return out


def restore_text(rules: list[Rule]) -> str:
    """``iptables-restore --noflush`` input creating the chains and appending ``rules``."""
    lines = []
    for table in HOOKS:
        lines += [f"*{table}", f":{CHAIN} - [0:0]"]
        lines += ["-A " + CHAIN + " " + " ".join(_quote(a) for a in r.args) for r in rules if r.table == table]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg


def install(rules: dict[int, list[Rule]]) -> None:
    """Replace the censor's chains with ``rules`` and hook them in. Raises CalledProcessError on failure."""
    remove()
    for fam, tool in TOOLS.items():
        subprocess.run([f"{tool}-restore", "--noflush"], input=restore_text(rules[fam]), text=True,
                       capture_output=True, check=True)
        for table, hook in HOOKS.items():
            subprocess.run([tool, "-w", "-t", table, "-I", hook, "1", "-j", CHAIN], capture_output=True, check=True)


def remove() -> None:
    """Unhook and delete the censor's chains (both families). Never raises."""
    for tool in TOOLS.values():
        for table, hook in HOOKS.items():
            for _ in range(16):  # every hook, however many times it was added
                r = subprocess.run([tool, "-w", "-t", table, "-D", hook, "-j", CHAIN], capture_output=True)
                if r.returncode != 0:
                    break
            subprocess.run([tool, "-w", "-t", table, "-F", CHAIN], capture_output=True)
            subprocess.run([tool, "-w", "-t", table, "-X", CHAIN], capture_output=True)
