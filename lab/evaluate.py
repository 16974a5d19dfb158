"""Grade the verdict engine in the lab: ``censorscope lab evaluate``.

For each scenario: apply it to a lab, start a control helper in the
``control`` namespace (the uncensored vantage), run the scenario's campaign
from the ``client`` namespace with ``censorscope run`` (one run per probe,
the client's ISP resolver, controls from the helper, confirmation re-tests
on), judge the stored measurements with ``censorscope.analysis.verdicts``
and compare each (target, probe) with the scenario's ground truth.

A row matches when the verdict is the expected one and, for ``blocked``, the
method is the expected one (``vpn.x.blocked`` also matches its sub-methods
``vpn.x.blocked.<sub>``; the lab's ``dns.sinkhole`` is the engine's
``dns.blockpage``). A *false blocked* is a ``blocked`` verdict where the truth
is ``ok`` or ``down``: the error that hurts people, reported separately.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from censorscope.lab import addressing as A
from censorscope.lab.scenario import Scenario, Truth
from censorscope.probes.errors import LabError

HELPER_PORT = 8742
#: the lab's documentation ranges: the helper must be allowed to measure them
LAB_NETWORKS = ("203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32")
#: lab method name -> engine method names that mean the same
METHOD_ALIASES = {"dns.sinkhole": ("dns.blockpage",)}
#: seconds between confirmation re-tests without residual censorship in the scenario
SPACING = 2.0
#: the longest spacing used: re-tests inside a longer penalty box meet the input's own residual
#: state, which the verdict engine recognises, so waiting out 90 s boxes only costs time
MAX_SPACING = 30.0


def residual_duration(sc: Scenario) -> float:
    """The longest penalty box of ``sc``'s censor (seconds; 0 without residual blocking)."""
    return max((float(c.get("duration", 0)) for c in sc.censor if c.get("behaviour") == "residual"), default=0.0)


def spacing(sc: Scenario) -> float:
    """Re-test spacing for ``sc``: just past its residual-blocking time (capped), else ``SPACING``."""
    d = residual_duration(sc)
    return min(d + 5.0, MAX_SPACING) if d else SPACING


def followup_wait(sc: Scenario) -> float:
    """Seconds to wait after a campaign before re-measuring inputs it caught in another input's penalty box:
    the whole box (uncapped) plus a margin, so no box a trigger of the campaign opened is still open."""
    d = residual_duration(sc)
    return d + 3.0 if d else SPACING


#: timeout given to the probes measured with ``censorscope probe`` and to every campaigned probe not in
#: ``STEP_TIMEOUT_PROBES`` (e.g. ``http``, whose timeout bounds the whole measurement: above the
#: slow-server scenario's 3 s delay, with margin for a loaded machine; the VPN probes)
PROBE_TIMEOUT = 8.0
#: campaigned probes whose ``timeout`` bounds each step (DNS query, connect, TLS handshake, response head)
STEP_TIMEOUT_PROBES = frozenset({"dns", "tcp", "tls", "web", "throughput"})
#: their per-step timeout in the lab. What the scenarios grade happens at once (resets, injected answers,
#: ICMP errors) or never (blackholes), so this only sets how long a blackholed step waits; it must stay
#: above what an honest slow step takes in the lab: an address assigned to nothing answers
#: host_unreachable after ~3 s (ARP gives up; 3.07 s in server-down), the slowest successful
#: connect/handshake seen under load was ~0.5 s, the latency scenario adds 0.3 s per round trip. (web's
#: whole HTTP round trip has its own 15 s ``http_timeout``, far above the slow server's 3 s.)
STEP_TIMEOUT = 5.0
RUN_TIMEOUT = 1800.0


def campaign_timeout(probe: str) -> float:
    """The ``[run] timeout`` of a lab campaign for ``probe``."""
    return STEP_TIMEOUT if probe in STEP_TIMEOUT_PROBES else PROBE_TIMEOUT


@dataclass(frozen=True)
class Row:
    """One graded (scenario, target, probe)."""

    scenario: str
    target: str
    probe: str
    expected_verdict: str
    expected_method: str | None
    verdict: str | None
    method: str | None
    match: bool
    confidence: float | None = None
    evidence: str = ""
    measurement_id: str | None = None

    @property
    def false_blocked(self) -> bool:
        """A ``blocked`` verdict where the truth is ok or down."""
        return self.verdict == "blocked" and self.expected_verdict != "blocked"

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object (the documented keys first, then the details)."""
        d = asdict(self)
        d["false_blocked"] = self.false_blocked
        return d


def method_matches(expected: str | None, got: str | None) -> bool:
    """Does the engine's method ``got`` name the truth's ``expected`` method?"""
    if expected is None:
        return True
    if got is None:
        return False
    if got == expected or got.startswith(expected + "."):
        return True
    if expected == "tor.blocked":  # the short name for vpn.tor.blocked and any sub-method of it
        return method_matches("vpn.tor.blocked", got)
    return got in METHOD_ALIASES.get(expected, ())


def grade(truth: Truth, verdict: str | None, method: str | None) -> bool:
    """True when ``verdict``/``method`` is what the ground truth says."""
    if verdict != truth.verdict:
        return False
    return truth.verdict != "blocked" or method_matches(truth.method, method)


def expected_input(probe: str, target: str) -> str | None:
    """The ``input`` a campaign stores for ``target`` measured by ``probe`` (None: not applicable)."""
    from censorscope.measure.targets import normalize_url
    from censorscope.probes import registry

    module = registry.load(probe)
    if not callable(getattr(module, "target_from_url", None)):
        return target  # measured as written (``censorscope probe``)
    try:
        url = normalize_url(target)
    except Exception:  # noqa: BLE001 - a target lists cannot hold is compared as written
        return target
    return module.target_from_url(url)


def campaign_toml(scenario: str, probe: str, list_file: Path, out: Path, control_url: str,
                  retest_spacing: float = SPACING) -> str:
    """The campaign a scenario's targets for one probe are measured with."""
    return "\n".join([
        f'name = "lab-evaluate-{scenario}"',
        "[targets]",
        f"lists = [{str(list_file)!r}]",
        "strict = true",
        "[run]",
        f'probes = ["{probe}"]',
        "concurrency = 16",
        "per_server = 4",
        f"timeout = {campaign_timeout(probe)}",
        "seed = 1",
        f"out = {str(out)!r}",
        f'resolvers = ["{A.RESOLVER_V4}"]',
        "[vantage]",
        'cc = "ZZ"',
        'asn = "AS64496"',
        'network = "censorscope lab client"',
        "[control]",
        f'url = "{control_url}"',
        "[confirm]",
        "enabled = true",
        "attempts = 2",
        f"spacing = {retest_spacing}",
        'innocuous_sni = "innocuous.invalid.example"',
        f'no_dns_server = "{A.NO_DNS_V4}"',
        "",
    ]).replace("'", '"')


def _censorscope() -> list[str]:
    exe = Path(sys.executable).with_name("censorscope")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from censorscope.measure.cli import main; main()"]


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Evaluator:
    """Runs scenarios' campaigns in one lab (a ``Topology`` and its environment)."""

    def __init__(self, topo: Any, env: dict[str, str], workdir: Path,
                 progress: Callable[[str], None] = lambda _: None) -> None:
        self.topo = topo
        self.env = dict(env)
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        self.workdir = workdir
        self.progress = progress
        self.control_url = f"http://{A.CONTROL_V4}:{HELPER_PORT}"
        self._helper_key = f"evaluate-helper-{os.getpid()}"

    # --- the control helper -------------------------------------------------
    def start_helper(self) -> None:
        """Start ``censorscope helper serve`` in the control namespace and wait until the client reaches it."""
        argv = [*_censorscope(), "helper", "serve", "--listen", f"{A.CONTROL_V4}:{HELPER_PORT}",
                "--resolver", A.PUBLIC_RESOLVER_V4, "--rate", "1000", "--burst", "1000"]
        for net in LAB_NETWORKS:
            argv += ["--allow", net]
        log = self.workdir / f"helper-{self.topo.name}.log"  # one per lab: labs may run side by side
        p = self.topo.spawn(self._helper_key, "control", argv, log=log, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.topo.call_in("client", _port_open, A.CONTROL_V4, HELPER_PORT):
                return
            if p.poll() is not None:
                break
            time.sleep(0.1)
        tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
        raise LabError(f"the control helper did not come up in the control namespace: {tail or 'no output'}")

    def stop_helper(self) -> None:
        """Stop the helper (idempotent)."""
        self.topo.stop(self._helper_key)

    # --- probes that take no list entries ----------------------------------------
    def _direct(self, probe: str, truths: list[Truth], out: Path) -> None:
        """Measure targets of a probe that campaigns cannot drive (no ``target_from_url``) or the
        control helper does not offer or would refuse (targets naming a file: ``?config=``):
        ``censorscope probe`` from the client, the same from the control namespace as the control
        (what the helper would return). No confirmation re-tests for these."""
        import dataclasses

        from censorscope.probes import registry

        fields = {f.name for f in dataclasses.fields(registry.load(probe).Options)}
        extra = ["--timeout", str(PROBE_TIMEOUT)] if "timeout" in fields else []
        out.mkdir(parents=True, exist_ok=True)
        lines = []
        # targets one after another (a VPN target's residual state must not meet the next one), but each
        # target's control alongside it: the control namespace is not behind the censor
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            for t in truths:
                self.progress(f"measuring {probe} {t.target} (probe command, control from the control namespace)")
                argv = [*_censorscope(), "probe", probe, t.target, "--json", *extra]
                control = pool.submit(self._probe_json, "control", argv)
                m = self._probe_json("client", argv)
                ctl = control.result()
                m["control"] = {"observations": ctl["observations"], "failure": None}
                m["vantage"] = {"cc": "ZZ", "asn": "AS64496", "network": "censorscope lab client"}
                m["run_id"] = f"evaluate-{probe}"
                lines.append(json.dumps(m))
        finally:
            pool.shutdown(wait=True)
        (out / "direct.jsonl").write_text("\n".join(lines) + "\n")

    def _probe_json(self, role: str, argv: list[str]) -> dict[str, Any]:
        p = self.topo.run(role, argv, check=False, timeout=120, env=self.env)
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise LabError(f"`{' '.join(argv[-4:])}` in {role} printed no measurement (exit {p.returncode}): "
                           f"{(p.stderr or p.stdout).strip()[-400:]}") from None

    # --- one scenario ---------------------------------------------------------
    def _campaign(self, sc: Scenario, probe: str, truths: list[Truth], base: Path, out: Path) -> None:
        """Run ``censorscope run`` from the client for ``truths`` of one probe, storing into ``out``."""
        lst = out.with_suffix(".txt")
        lst.write_text("".join(f"{t.target}\n" for t in truths))
        camp = out.with_suffix(".toml")
        camp.write_text(campaign_toml(sc.name, probe, lst, out, self.control_url, spacing(sc)))
        t0 = time.monotonic()
        p = self.topo.run("client", [*_censorscope(), "run", str(camp)], check=False, timeout=RUN_TIMEOUT,
                          env=self.env)
        out.with_suffix(".run.log").write_text(p.stdout + p.stderr)
        if not out.exists() or not any(out.glob("*.jsonl")):
            raise LabError(f"{sc.name}: `censorscope run` for {probe} stored nothing (exit {p.returncode}): "
                           f"{(p.stderr or p.stdout).strip()[-600:]}")
        self.progress(f"{sc.name}: {probe} done in {time.monotonic() - t0:.0f} s")

    def run_scenario(self, sc: Scenario) -> list[Row]:
        """Measure every truth row of ``sc`` (the lab must already run ``sc``) and grade it.

        An input the engine finds caught in *another* input's penalty box (``inconclusive``,
        method ``residual``) says nothing yet; like a careful user, evaluate measures it again
        once every box the campaign opened has closed (``followup_wait``) and grades that
        measurement, judged in one batch with the rest."""
        import dataclasses

        from censorscope.analysis.verdicts import verdict_rows
        from censorscope.analysis.verdicts.combine import RESIDUAL
        from censorscope.lab.vpn_servers import expand_target
        from censorscope.measure.helper_policy import HELPER_PROBES
        from censorscope.probes import registry
        from censorscope.probes.vpn_common import config_param

        base = self.workdir / sc.name
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        # per-lab values (the WireGuard keys) filled into targets; rows keep the scenario's own text
        truth = [dataclasses.replace(t, target=expand_target(t.target, self.topo.dir)) for t in sc.truth]
        by_probe: dict[str, list[Truth]] = {}
        for t in truth:
            by_probe.setdefault(t.probe, []).append(t)
        outs: list[Path] = []
        campaigned: set[str] = set()
        for probe, truths in by_probe.items():
            out = base / probe
            outs.append(out)
            if (not callable(getattr(registry.load(probe), "target_from_url", None)) or probe not in HELPER_PROBES
                    or any(config_param(t.target) for t in truths)):
                # the helper offers no control for it (or never takes the file a target names, e.g. the
                # lab's WireGuard keys): measure client and control directly, the same command in each
                self._direct(probe, truths, out)
                continue
            campaigned.add(probe)
            self.progress(f"measuring {sc.name}: {probe} x {len(truths)}")
            self._campaign(sc, probe, truths, base, out)

        def key(t: Truth) -> tuple[str, str]:
            return (t.probe, expected_input(t.probe, t.target) or t.target)

        # one batch: what one probe proves (a certificate valid for a name) informs another's verdict
        got = {(r["probe"], r["input"]): r for r in verdict_rows(outs)}
        caught = [t for t in truth if t.probe in campaigned and (got.get(key(t)) or {}).get("method") == RESIDUAL]
        if caught:
            wait = followup_wait(sc)
            self.progress(f"{sc.name}: {len(caught)} input(s) met another input's penalty box; "
                          f"measuring them again after {wait:.0f} s")
            time.sleep(wait)
            again: dict[str, list[Truth]] = {}
            for t in caught:
                again.setdefault(t.probe, []).append(t)
            follow_outs = []
            for probe, truths in again.items():
                out = base / f"{probe}-followup"
                follow_outs.append(out)
                self._campaign(sc, probe, truths, base, out)
            follow_ids = _first_ids(follow_outs)
            got, first = {}, got
            for r in verdict_rows(outs + follow_outs):
                k = (r["probe"], r["input"])
                if r["measurement_id"] in follow_ids:
                    r["evidence"] = (f"Measured again {wait:.0f} s after the campaign (its first measurement "
                                     f"{first[k]['measurement_id']} met another input's penalty box): {r['evidence']}")
                    got[k] = r
                else:
                    got.setdefault(k, r)
        rows = []
        for written, t in zip(sc.truth, truth, strict=True):
            r = got.get(key(t))
            verdict, method = (r["verdict"], r["method"]) if r else (None, None)
            rows.append(Row(sc.name, written.target, t.probe, t.verdict, t.method, verdict, method,
                            grade(t, verdict, method), r["confidence"] if r else None,
                            r["evidence"] if r else "no measurement was stored for this target",
                            r["measurement_id"] if r else None))
        return rows


def _first_ids(outs: list[Path]) -> set[str]:
    """Measurement ids of the first attempts stored under ``outs`` (re-tests excluded)."""
    ids = set()
    for out in outs:
        for f in out.glob("*.jsonl"):
            for line in f.read_text(errors="replace").splitlines():
                try:
                    m = json.loads(line)
                except ValueError:
                    continue  # a torn line: the engine reports it
                if isinstance(m, dict) and not m.get("attempt") and m.get("measurement_id"):
                    ids.add(str(m["measurement_id"]))
    return ids


#: rough seconds a censor behaviour adds to grading a scenario: steps waited out to their timeout and
#: their re-tests (blackholes, forged DNS answers leading to a blackhole, dropped ports), transfers run to
#: their time cap (throttling), the fet probe's own waits for residual blocking (from --all timings)
BEHAVIOUR_COST = {"ip_blackhole": 40.0, "dns_injection": 25.0, "port_block": 20.0, "throttle": 20.0,
                  "fet_block": 60.0}


def estimated_cost(sc: Scenario) -> float:
    """A rough cost of grading ``sc`` in seconds (used only to start the longest scenarios first): its
    rows, the penalty boxes its re-tests and follow-ups wait out, what its censor's behaviours make
    probes wait for, and the servers of its VPN probes."""
    cost = 5.0 + len(sc.truth)
    if residual_duration(sc):
        cost += 4 * spacing(sc) + followup_wait(sc)
    cost += sum(BEHAVIOUR_COST.get(str(c.get("behaviour")), 0.0) for c in sc.censor)
    if sc.vpn:
        cost += 10.0
    return cost


def _grade_in_one_lab(name: str, take: Callable[[], tuple[int, Scenario] | None], workdir: Path,
                      progress: Callable[[str], None], done: Callable[[int, list[Row]], None]) -> None:
    """Build lab ``name`` for the first scenario ``take()`` hands out (with its index), then switch it to
    each next one, until ``take()`` returns None; ``done(index, rows)`` after each. The lab is always
    torn down."""
    from censorscope.lab.lab import Lab

    got = take()
    if got is None:
        return
    i, sc = got
    with Lab(name) as lab:
        t0 = time.monotonic()
        lab.up(sc)
        progress(f"lab {name} up for {sc.name} in {time.monotonic() - t0:.1f} s")
        ev = Evaluator(lab.topo, lab.env(), workdir, progress)
        ev.start_helper()
        try:
            first = True
            while got is not None:
                i, sc = got
                t0 = time.monotonic()
                if not first:
                    lab.switch(sc)
                first = False
                rows = ev.run_scenario(sc)
                progress(f"{sc.name}: switched, measured and graded in {time.monotonic() - t0:.0f} s (lab {name})")
                done(i, rows)
                got = take()
        finally:
            ev.stop_helper()


def evaluate(scenarios: Iterable[Scenario], *, lab_name: str | None = None, workdir: Path | None = None,
             progress: Callable[[str], None] = lambda _: None, jobs: int = 1) -> list[Row]:
    """Grade ``scenarios``. Without ``lab_name`` private labs are built (and torn down) and switched
    between them: ``jobs`` labs side by side (each its own namespaces, servers, censor and control
    helper), each taking the next scenario when it is done with one, longest first; the rows come back
    in the order of ``scenarios`` whatever finished first. With ``lab_name``, the running lab of that
    name is used as it is: it must run the one scenario given."""
    from censorscope.lab.servers import lab_env
    from censorscope.lab.topology import Topology, read_state, require_root, state_dir

    require_root()
    scenarios = list(scenarios)
    if jobs < 1:
        raise LabError(f"jobs must be at least 1, got {jobs}")
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="censorscope-evaluate-")
        workdir = Path(tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if lab_name is not None:
            state = read_state(lab_name)
            running = state.get("scenario")
            if not state or not running:
                raise LabError(f"lab {lab_name!r} is not up; start it with `censorscope lab up --name {lab_name}`")
            if [s.name for s in scenarios] != [running]:
                raise LabError(f"lab {lab_name!r} runs scenario {running!r}; evaluate exactly that one there "
                               f"(or leave out --name to build a lab for {', '.join(s.name for s in scenarios)})")
            ev = Evaluator(Topology(lab_name, keep=True), lab_env(state_dir(lab_name)), workdir, progress)
            ev.start_helper()
            try:
                return ev.run_scenario(scenarios[0])
            finally:
                ev.stop_helper()
        names = [s.name for s in scenarios]
        if jobs > 1 and len(set(names)) != len(names):
            raise LabError(f"labs side by side need distinct scenario names (measurements are kept under "
                           f"{workdir}/<name>): {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
        return _evaluate_in_labs(scenarios, workdir, progress, min(jobs, len(scenarios)) or 1)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _evaluate_in_labs(scenarios: list[Scenario], workdir: Path, progress: Callable[[str], None],
                      jobs: int) -> list[Row]:
    """``jobs`` private labs grading ``scenarios`` from one queue (longest first); rows in input order."""
    import threading

    base = f"ev{os.getpid() % 100000}"
    order = list(range(len(scenarios)))
    if jobs > 1:
        order.sort(key=lambda i: estimated_cost(scenarios[i]), reverse=True)
    lock = threading.Lock()
    stop = threading.Event()
    results: dict[int, list[Row]] = {}

    def take() -> tuple[int, Scenario] | None:
        with lock:
            if not order or stop.is_set():
                return None
            i = order.pop(0)
            return i, scenarios[i]

    def done(i: int, rows: list[Row]) -> None:
        with lock:
            results[i] = rows

    def worker(name: str) -> None:
        try:
            _grade_in_one_lab(name, take, workdir, progress, done)
        except BaseException:
            stop.set()  # the other labs finish the scenario they are on, then stop
            raise

    if jobs == 1:
        worker(base)
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="evaluate-lab") as pool:
            futures = [pool.submit(worker, f"{base}-{k}") for k in range(jobs)]
            try:
                for f in futures:
                    f.result()  # re-raises the first failure (once every lab is down)
            except BaseException:
                stop.set()  # e.g. Ctrl-C: no lab starts another scenario
                raise
    return [r for i in range(len(scenarios)) for r in results[i]]


# --- the command ---------------------------------------------------------------------------
def _table(rows: list[Row]) -> str:
    head = ("scenario", "target", "probe", "expected", "got", "match")
    data = [(r.scenario, r.target, r.probe,
             r.expected_verdict + (f" {r.expected_method}" if r.expected_method else ""),
             (r.verdict or "-") + (f" {r.method}" if r.method else ""),
             "yes" if r.match else ("NO (false blocked)" if r.false_blocked else "NO")) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *data, strict=False)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in (head, *data)]
    return "\n".join(lines)


def totals(rows: list[Row]) -> str:
    """``N rows: M match, K mismatch (F false blocked)``."""
    bad = [r for r in rows if not r.match]
    return (f"{len(rows)} rows: {len(rows) - len(bad)} match, {len(bad)} mismatch "
            f"({sum(r.false_blocked for r in rows)} false blocked)")


@click.command("evaluate")
@click.option("--scenario", "scenario_names", multiple=True,
              help="Shipped scenario to grade (repeatable; see `censorscope lab scenarios`).")
@click.option("--scenario-file", "scenario_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A scenario TOML file of your own (repeatable).")
@click.option("--all", "all_scenarios", is_flag=True, help="Every shipped scenario, negative controls included.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per row: scenario, target, probe, expected_verdict, expected_method, "
                   "verdict, method, match (and details).")
@click.option("--name", default=None,
              help="Use this running lab (`lab up --name N --scenario S`) instead of building one; it grades S.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the campaigns, measurements and logs in this directory.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Grade scenarios in this many labs side by side (longest first). Each lab is a few "
                   "processes mostly waiting on timeouts; 2-3 suit a 2-core machine.")
def evaluate_command(scenario_names: tuple[str, ...], scenario_files: tuple[str, ...], all_scenarios: bool,
                     as_json: bool, name: str | None, out: Path | None, jobs: int) -> None:
    """Grade censorscope's verdicts against the scenarios' ground truth (needs root).

    Runs each scenario's campaign from the client namespace with controls from
    the control namespace, judges the measurements and prints one row per
    (scenario, target, probe): expected, got, match; then totals. Exit code 1
    on any mismatch.
    """
    from censorscope.lab import scenario as scenario_mod
    from censorscope.lab import topology

    topology.require_root()
    names = list(scenario_names)
    if all_scenarios:
        if names or scenario_files:
            raise click.UsageError("--all grades every shipped scenario: give no --scenario/--scenario-file with it")
        names = scenario_mod.shipped()
    scs = [scenario_mod.load(n) for n in names] + [scenario_mod.load_file(f) for f in scenario_files]
    if not scs:
        raise click.UsageError("give --scenario NAME, --scenario-file FILE or --all")
    if name is not None and jobs > 1:
        raise click.UsageError("--name grades the one scenario that lab runs: --jobs needs labs of its own")
    rows = evaluate(scs, lab_name=name, workdir=out, jobs=jobs,
                    progress=lambda msg: click.echo(msg, err=True))
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.to_json(), ensure_ascii=False))
    else:
        click.echo(_table(rows))
        click.echo(totals(rows))
    if any(not r.match for r in rows):
        sys.exit(1)
