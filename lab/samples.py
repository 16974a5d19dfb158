"""A sample data set made in the lab over simulated days: ``censorscope lab samples``.

The lab is one machine and a few minutes of real time; the sample pretends to
be a vantage measured for several days. For each simulated day the lab runs
that day's scenario (built from :data:`SCHEDULE`: which site is censored how
from which day to which day), the campaign is run from ``client`` with
controls from ``control`` exactly as ``censorscope lab evaluate`` runs it
(:class:`censorscope.lab.evaluate.Evaluator`), and every stored measurement is
then re-stamped with the simulated time:

- ``measurement_start_time`` = simulated day start + run slot + the real offset
  inside the run (so originals and their confirmation re-tests keep their order
  and spacing);
- ``measurement_id`` gets the simulated time stamp (its random part is kept;
  references to it, e.g. ``annotations.confirms``, are rewritten alike);
- ``annotations.simulated_day``, ``annotations.simulated_run``,
  ``annotations.real_start_time`` and ``annotations.real_measurement_id``
  record what was simulated and what really happened;
- ``campaign`` is ``lab-samples``.

Everything else (observations, controls, failures) is what the probes really
recorded. The ground truth (per day, per target) and the lab's own grading of
each run are written next to the measurements.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from censorscope.lab import addressing as A
from censorscope.lab.scenario import Scenario, parse

#: the first simulated day starts here (UTC midnight; documentation only, never a real date of measurement)
SIM_EPOCH = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
MEASUREMENTS_FILE = "lab-days.jsonl.gz"
TRUTH_FILE = "ground_truth.json"
CAMPAIGN = "lab-samples"
_ID = re.compile(r"^\d{8}T\d{6}\.\d{6}Z_([0-9a-f]+)$")


@dataclass(frozen=True)
class Entry:
    """One site of the sample: how (``treatment``) and when (``first``..``last`` day, inclusive) it is censored."""

    site: str
    treatment: str  # "none", "dns_injection", "sni_reset", "ip_blackhole", "down", "cdn"
    first: int | None = None
    last: int | None = None
    address: tuple[str, ...] = ()
    isp_address: tuple[str, ...] = ()
    note: str = ""

    @property
    def target(self) -> str:
        """The URL measured."""
        return f"https://{self.site}/"

    def active(self, day: int) -> bool:
        """Is the censor treatment on during ``day``?"""
        if self.treatment not in ("dns_injection", "sni_reset", "ip_blackhole") or self.first is None:
            return False
        return day >= self.first and (self.last is None or day <= self.last)

    def truth(self, day: int) -> tuple[str, str | None]:
        """(verdict, method) a correct verdict engine gives on ``day``."""
        if self.treatment == "down":
            return "down", None
        if not self.active(day):
            return "ok", None
        return "blocked", {"dns_injection": "dns.injection", "sni_reset": "tls.sni_reset",
                           "ip_blackhole": "tcp.blackhole"}[self.treatment]


#: the story of the sample (days are 1-based)
SCHEDULE: tuple[Entry, ...] = (
    Entry("www.example.com", "none", note="never censored"),
    Entry("news.example.org", "none", note="never censored"),
    Entry("static.example.com", "none", note="never censored"),
    Entry("cdn.example.com", "cdn", address=("203.0.113.175", "2001:db8:3::1:175"),
          isp_address=("203.0.113.176", "2001:db8:3::1:176"),
          note="NEGATIVE CONTROL: the ISP resolver answers a CDN edge, the control's resolver the origin"),
    Entry("dead.example.org", "down", address=(A.DOWN_V4,),
          note="NEGATIVE CONTROL: the server is really down every day (control fails too)"),
    Entry("chat.example.com", "dns_injection", 4, None, note="DNS injection from day 4 on"),
    Entry("video.example.net", "dns_injection", 4, 8, note="DNS injection on days 4-8, lifted on day 9"),
    Entry("forbidden.example.org", "sni_reset", 6, None, address=("203.0.113.160", "2001:db8:3::1:160"),
          note="SNI-triggered RSTs from day 6 on"),
    Entry("innocuous.example.org", "none", address=("203.0.113.160", "2001:db8:3::1:160"),
          note="same address as forbidden.example.org, never censored"),
    Entry("press.example.org", "sni_reset", 6, None, note="SNI-triggered RSTs from day 6 on"),
    Entry("dark.example.net", "ip_blackhole", 7, None, address=("203.0.113.150", "2001:db8:3::1:150"),
          note="its addresses blackholed from day 7 on"),
    Entry("lit.example.net", "none", address=("203.0.113.151", "2001:db8:3::1:151"),
          note="next address to dark.example.net, never censored"),
)


def day_scenario(day: int, schedule: Sequence[Entry] = SCHEDULE) -> Scenario:
    """The lab scenario of simulated ``day``: every site hosted, that day's censor rules, that day's truth."""
    sites: list[dict[str, Any]] = []
    for e in schedule:
        s: dict[str, Any] = {"name": e.site}
        if e.address:
            s["address"] = list(e.address) if len(e.address) > 1 else e.address[0]
        if e.isp_address:
            s["isp_address"] = list(e.isp_address)
        sites.append(s)
    censor: list[dict[str, Any]] = []
    dns = [e.site for e in schedule if e.treatment == "dns_injection" and e.active(day)]
    sni = [e.site for e in schedule if e.treatment == "sni_reset" and e.active(day)]
    hole = [a for e in schedule if e.treatment == "ip_blackhole" and e.active(day) for a in e.address]
    if dns:
        censor.append({"behaviour": "dns_injection", "names": dns})
    if sni:
        censor.append({"behaviour": "rst_injection", "sni": sni})
    if hole:
        censor.append({"behaviour": "ip_blackhole", "addresses": hole})
    truth = []
    for e in schedule:
        verdict, method = e.truth(day)
        t = {"target": e.target, "probe": "web", "verdict": verdict}
        if method:
            t["method"] = method
        truth.append(t)
    data = {"name": f"samples-day-{day:02d}", "description": f"censorscope lab samples: simulated day {day}",
            "site": sites, "censor": censor, "truth": truth}
    return parse(data, f"<lab samples day {day}>")


def ground_truth(days: Sequence[int], runs: int, schedule: Sequence[Entry] = SCHEDULE) -> dict[str, Any]:
    """The ground-truth document (``ground_truth.json``) for ``days``."""
    return {
        "description": "What the lab's censor did on each simulated day (censorscope lab samples).",
        "simulated_epoch": SIM_EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days": list(days),
        "runs_per_day": runs,
        "probe": "web",
        "vantage": {"cc": "ZZ", "asn": "AS64496", "network": "censorscope lab client"},
        "sites": [{
            "target": e.target, "site": e.site, "treatment": e.treatment, "first_day": e.first,
            "last_day": e.last, "note": e.note,
            "episode": _episode(e, days),
            "by_day": {str(d): dict(zip(("verdict", "method"), e.truth(d), strict=True)) for d in days},
        } for e in schedule],
    }


def _episode(e: Entry, days: Sequence[int]) -> dict[str, str | None] | None:
    """The simulated blocking episode of ``e`` as UTC dates (``end``: first unblocked day, None if still on)."""
    on = [d for d in days if e.active(d)]
    if not on:
        return None
    after = [d for d in days if d > on[-1]]
    return {"start": day_date(on[0]), "end": day_date(after[0]) if after else None}


def day_date(day: int) -> str:
    """The simulated UTC date of ``day`` (``YYYY-MM-DD``)."""
    return (SIM_EPOCH + dt.timedelta(days=day - 1)).strftime("%Y-%m-%d")


def _parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def restamp(records: list[dict[str, Any]], day: int, run: int, runs: int) -> list[dict[str, Any]]:
    """``records`` of one real run moved to simulated ``day`` (run slot ``run`` of ``runs``), see module doc."""
    if not records:
        return []
    real = [_parse_time(m["measurement_start_time"]) for m in records]
    t0 = min(real)
    slot = SIM_EPOCH + dt.timedelta(days=day - 1) + dt.timedelta(hours=1 + run * (22 / max(runs, 1)))
    ids: dict[str, str] = {}
    stamped = []
    for m, t in zip(records, real, strict=True):
        sim = slot + (t - t0)
        old = m.get("measurement_id") or ""
        match = _ID.match(old)
        if match:
            ids[old] = sim.strftime("%Y%m%dT%H%M%S.%fZ") + "_" + match.group(1)
        stamped.append((m, sim, old))
    out = []
    for m, sim, old in stamped:
        text = json.dumps(m, ensure_ascii=False)
        for o, n in ids.items():  # ids are unique random strings: replacing them rewrites every reference
            text = text.replace(o, n)
        new = json.loads(text)
        new["measurement_start_time"] = _iso(sim)
        new["campaign"] = CAMPAIGN
        ann = new.setdefault("annotations", {})
        ann.update({"simulated_day": day, "simulated_run": run + 1,
                    "real_start_time": m["measurement_start_time"], "real_measurement_id": old})
        out.append(new)
    return out


def _read_jsonl(folder: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(folder.rglob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def generate(out: Path, *, days: Sequence[int] | int = 10, runs: int = 2,
             progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Build a lab, measure ``days`` (a count from day 1, or explicit day numbers) ``runs`` times each,
    write ``out/lab-days.jsonl.gz`` and ``out/ground_truth.json``; returns the ground truth document
    (with the lab's grading of each run under ``lab_grading``)."""
    from censorscope.lab.evaluate import Evaluator
    from censorscope.lab.lab import Lab
    from censorscope.lab.topology import require_root

    require_root()
    day_list = list(range(1, days + 1)) if isinstance(days, int) else sorted(set(days))
    if not day_list or day_list[0] < 1 or runs < 1:
        raise click.UsageError("days must be >= 1 and runs >= 1")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="censorscope-samples-"))
    records: list[dict[str, Any]] = []
    grading: list[dict[str, Any]] = []
    t_start = time.monotonic()
    try:
        with Lab(f"sm{os.getpid() % 100000}") as lab:
            lab.up(day_scenario(day_list[0]))
            ev = Evaluator(lab.topo, lab.env(), work, progress)
            ev.start_helper()
            try:
                for i, day in enumerate(day_list):
                    sc = day_scenario(day)
                    if i:
                        lab.switch(sc)
                    for run in range(runs):
                        progress(f"simulated day {day}, run {run + 1}/{runs}")
                        rows = ev.run_scenario(sc)
                        records += restamp(_read_jsonl(work / sc.name), day, run, runs)
                        grading += [{"day": day, "run": run + 1, "target": r.target, "expected": r.expected_verdict,
                                     "expected_method": r.expected_method, "verdict": r.verdict,
                                     "method": r.method, "match": r.match} for r in rows]
            finally:
                ev.stop_helper()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    records.sort(key=lambda m: m["measurement_start_time"])
    with gzip.open(out / MEASUREMENTS_FILE, "wt", encoding="utf-8", compresslevel=9) as f:
        for m in records:
            f.write(json.dumps(m, ensure_ascii=False, separators=(",", ":")) + "\n")
    doc = ground_truth(day_list, runs)
    doc["lab_grading"] = {
        "note": "verdicts of censorscope lab evaluate for each run at generation time (rules of that commit)",
        "runs": len({(g["day"], g["run"]) for g in grading}),
        "rows": len(grading),
        "matches": sum(g["match"] for g in grading),
        "mismatches": [g for g in grading if not g["match"]],
    }
    doc["generation_seconds"] = round(time.monotonic() - t_start, 1)
    doc["measurements"] = len(records)
    (out / TRUTH_FILE).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return doc


@click.command("samples")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/samples"),
              show_default=True, help="Folder for lab-days.jsonl.gz and ground_truth.json.")
@click.option("--days", type=click.IntRange(1, 60), default=10, show_default=True, help="Simulated days (from day 1).")
@click.option("--day", "day_list", type=click.IntRange(1, 60), multiple=True,
              help="Measure only these simulated days (repeatable; overrides --days).")
@click.option("--runs", type=click.IntRange(1, 24), default=2, show_default=True, help="Campaign runs per day.")
def samples_command(out: Path, days: int, day_list: tuple[int, ...], runs: int) -> None:
    """Make the sample data set: several simulated days of a vantage, measured in the lab (needs root).

    Each simulated day applies that day's censorship (see censorscope.lab.samples.SCHEDULE), runs the
    campaign from the client namespace with controls from the control namespace, and stamps the
    measurements with the simulated time (real times kept in annotations).
    """
    doc = generate(out, days=list(day_list) or days, runs=runs,
                   progress=lambda msg: click.echo(f"measuring {msg}", err=True))
    g = doc["lab_grading"]
    click.echo(f"{doc['measurements']} measurements over {len(doc['days'])} simulated days in "
               f"{doc['generation_seconds']} s -> {out / MEASUREMENTS_FILE}; lab grading {g['matches']}/{g['rows']}")
