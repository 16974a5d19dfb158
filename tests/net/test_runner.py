"""The campaign runner: units, concurrency limits, order, hooks, resume, bounded memory.

Most tests use a fake probe module injected into the runner (no sockets); the
last ones run the real ``tcp`` probe against loopback servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import types
from collections import Counter
from pathlib import Path

import pytest

from censorscope.measure import runner as runner_mod
from censorscope.measure.campaign import Campaign
from censorscope.measure.runner import Retest, Runner
from censorscope.measure.runs import execute
from censorscope.measure.store import JsonlWriter, iter_measurements, new_run_id
from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.observation import Recorder

pytestmark = pytest.mark.net


class FakeProbe:
    """A probe module double that records what it was asked to do."""

    def __init__(self, delay: float = 0.0, name: str = "fake") -> None:
        self.delay = delay
        self.calls: list[tuple[str, object]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.per_host: Counter[str] = Counter()
        self.max_per_host = 0
        self.mapped = 0
        self.hang: set[str] = set()
        self.error: set[str] = set()
        self.module = self._module(name)

    def _module(self, name: str) -> types.ModuleType:
        mod = types.ModuleType(f"fake_{name}")

        @dataclasses.dataclass
        class Options:
            timeout: float = 10.0
            resolver: str | None = None
            flavour: str = "plain"

        async def measure(target: str, net: object, options: Options) -> list:
            self.calls.append((target, options))
            host = target.split("/")[2]
            self.inflight += 1
            self.per_host[host] += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.max_per_host = max(self.max_per_host, self.per_host[host])
            try:
                rec = Recorder()
                step = rec.begin("connect", address=host, ip="127.0.0.1")
                if target in self.hang:
                    await asyncio.sleep(3600)
                if target in self.error:
                    raise InvalidTarget(f"cannot measure {target}")
                await asyncio.sleep(self.delay)
                if target.endswith("/fail"):
                    step.fail("connection_reset")
                else:
                    step.ok(flavour=options.flavour)
                return rec.observations
            finally:
                self.inflight -= 1
                self.per_host[host] -= 1

        def target_from_url(url: str) -> str | None:
            self.mapped += 1
            return None if url.endswith("/skip") else url

        mod.NAME, mod.VERSION, mod.SUMMARY, mod.TARGET_HELP = name, "9", "fake", "URL"
        mod.Options = Options
        mod.measure = measure
        mod.target_from_url = target_from_url
        return mod


def _list(tmp_path: Path, urls: list[str]) -> str:
    p = tmp_path / "list.txt"
    p.write_text("".join(u + "\n" for u in urls), encoding="utf-8")
    return str(p)


def _run(campaign: Campaign, probe: FakeProbe, **kw) -> tuple[object, list[dict]]:
    summary = asyncio.run(execute(campaign, probes={probe.module.NAME: probe.module}, **kw))
    return summary, list(iter_measurements(summary.path))


def test_every_unit_measured_once_with_envelope(tmp_path):
    urls = [f"http://h{i % 5}.example/{i}" for i in range(40)]
    c = Campaign(name="t", lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "out"),
                 repeat=2, concurrency=8).override(cc="XX", asn="AS64500", network="Lab ISP")
    probe = FakeProbe()
    summary, ms = _run(c, probe)
    assert summary.complete and summary.measured == 80 and summary.planned == 80
    assert Counter((m["input"], m["repetition"]) for m in ms) == {(u, r): 1 for u in urls for r in (0, 1)}
    m = ms[0]
    assert m["campaign"] == "t" and m["run_id"] == summary.run_id and m["probe"] == "fake"
    assert m["probe_version"] == "9" and m["attempt"] == 0 and m["control"] is None
    assert m["vantage"] == {"cc": "XX", "asn": "AS64500", "network": "Lab ISP", "resolver": None}
    assert m["annotations"]["url"] == m["input"]
    assert m["observations"][0]["operation"] == "connect"
    assert summary.path.name == f"{summary.run_id}.jsonl"
    assert summary.per_probe == {"fake": 80} and summary.per_failure == {"ok": 80}


def test_concurrency_and_per_server_limits(tmp_path):
    urls = [f"http://h{i % 4}.example/{i}" for i in range(64)]
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"),
                 concurrency=6, per_server=2, seed=1)
    probe = FakeProbe(delay=0.01)
    summary, _ = _run(c, probe)
    assert summary.measured == 64
    assert probe.max_per_host == 2  # the limit was reached and never exceeded
    assert 3 <= probe.max_inflight <= 6  # several servers in parallel, never above the global bound


def test_order_is_deterministic_per_seed_and_repetitions_are_a_pass_apart(tmp_path):
    urls = [f"http://h{i}.example/" for i in range(50)]
    lst = _list(tmp_path, urls)

    def order(seed: int) -> list[tuple[str, int]]:
        probe = FakeProbe()
        c = Campaign(lists=[lst], probes=["fake"], out=str(tmp_path / f"o{seed}"), concurrency=1,
                     seed=seed, repeat=2)
        _, ms = _run(c, probe)
        return [(m["input"], m["repetition"]) for m in ms]

    a, b, other = order(7), order(7), order(8)
    assert a == b and a != other
    assert [u for u, _ in a[:50]] != urls  # shuffled
    assert [r for _, r in a] == [0] * 50 + [1] * 50  # all of repetition 0 before any of repetition 1


def test_skipped_and_shared_targets(tmp_path):
    probe = FakeProbe()
    mod = probe.module
    mod.target_from_url = lambda url: None if url.endswith("/skip") else url.split("/")[2]
    urls = ["http://a.example/1", "http://a.example/2", "http://b.example/skip", "http://c.example/"]
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"))
    # the fake measure() wants a URL; give it one built from the host target
    real = mod.measure
    mod.measure = lambda target, net, options: real(f"http://{target}/", net, options)
    summary, ms = _run(c, probe)
    assert sorted(m["input"] for m in ms) == ["a.example", "c.example"]
    assert summary.planned == 2


def test_probe_errors_and_hangs_are_recorded_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "WATCHDOG_MIN", 0.2)
    monkeypatch.setattr(runner_mod, "WATCHDOG_FACTOR", 1.0)
    urls = ["http://a.example/ok", "http://b.example/bad", "http://c.example/hang", "http://d.example/fail"]
    probe = FakeProbe()
    probe.error.add(urls[1])
    probe.hang.add(urls[2])
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"), timeout=0.1)
    summary, ms = _run(c, probe)
    by = {m["input"]: m for m in ms}
    assert by[urls[1]]["annotations"]["probe_error"] == f"InvalidTarget: cannot measure {urls[1]}"
    assert by[urls[1]]["observations"] == []
    assert by[urls[2]]["annotations"]["runner_failure"] == "generic_timeout_error"
    assert by[urls[3]]["observations"][0]["failure"] == "connection_reset"
    assert summary.per_failure == {"ok": 1, "probe_error": 1, "generic_timeout_error": 1, "connection_reset": 1}
    assert summary.failed == 3 and summary.complete
    assert all(opts.timeout == 0.1 for _, opts in probe.calls)


def test_probe_options_resolvers_and_unknown_options(tmp_path):
    urls = ["http://a.example/"]
    probe = FakeProbe()
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"),
                 resolvers=["127.0.0.1:5353", "127.0.0.2"], probe_options={"fake": {"flavour": "spicy"}})
    summary, ms = _run(c, probe)
    assert sorted(m["vantage"]["resolver"] for m in ms) == ["127.0.0.1:5353", "127.0.0.2"]
    assert {(o.resolver, o.flavour) for _, o in probe.calls} == {("127.0.0.1:5353", "spicy"), ("127.0.0.2", "spicy")}
    assert summary.planned == 2
    bad = dataclasses.replace(c, probe_options={"fake": {"flavor": "x"}})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) flavor for probe 'fake'"):
        _run(bad, probe)
    res = dataclasses.replace(c, probe_options={"fake": {"resolver": "127.0.0.9"}})
    with pytest.raises(ConfigError, match=r"not in \[probe.fake\]"):
        _run(res, probe)
    other = dataclasses.replace(c, probe_options={"dns": {"x": 1}})
    with pytest.raises(ConfigError, match=r"\[probe.dns\] options given for a probe that is not run"):
        _run(other, probe)


def test_probe_without_target_from_url_is_refused(tmp_path):
    probe = FakeProbe()
    del probe.module.target_from_url
    c = Campaign(lists=[_list(tmp_path, ["a.example"])], probes=["fake"], out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="no target_from_url"):
        _run(c, probe)


class Control:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def control_for(self, probe: str, target: str, options: object) -> dict | None:
        self.asked.append((probe, target))
        if "broken" in target:
            raise RuntimeError("helper unreachable")
        return {"observations": [{"operation": "connect", "failure": None}], "from": "control"}


def test_control_hook(tmp_path):
    urls = ["http://a.example/", "http://broken.example/"]
    control = Control()
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"))
    _, ms = _run(c, FakeProbe(), control=control)
    by = {m["input"]: m for m in ms}
    assert by[urls[0]]["control"]["from"] == "control"
    assert by[urls[1]]["control"] is None
    assert by[urls[1]]["annotations"]["control_error"] == "RuntimeError: helper unreachable"
    assert sorted(control.asked) == [("fake", u) for u in urls]


class Confirm:
    def retests(self, measurement: dict) -> list[Retest]:
        if not measurement["input"].endswith("/fail"):
            return []
        return [
            Retest("fake", measurement["input"], {"flavour": "again"}, delay=0.05, reason="reset seen"),
            Retest("fake", measurement["input"], {}, delay=0.0, reason="second look"),
        ]


def test_confirmer_retests_are_stored_as_further_attempts(tmp_path):
    urls = ["http://a.example/", "http://b.example/fail"]
    probe = FakeProbe()
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"))
    summary, ms = _run(c, probe, confirm=Confirm())
    assert summary.measured == 2 and summary.retests == 2
    fail = [m for m in ms if m["input"] == urls[1]]
    assert [m["attempt"] for m in fail] == [0, 1, 2]
    first = fail[0]["measurement_id"]
    assert all(m["annotations"]["confirms"] == first for m in fail[1:])
    assert fail[1]["annotations"]["retest_reason"] == "reset seen"
    assert fail[1]["annotations"]["retest_options"] == {"flavour": "again"}
    assert [o.flavour for t, o in probe.calls if t == urls[1]] == ["plain", "again", "plain"]


def test_stop_then_resume_measures_each_unit_exactly_once(tmp_path):
    urls = [f"http://h{i}.example/" for i in range(60)]
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"), concurrency=4, repeat=2)
    probe = FakeProbe(delay=0.005)

    async def stop_after_some() -> object:
        stop = asyncio.Event()

        class StopAt:
            n = 0

            def start(self, total: int, done: int) -> None:
                pass

            def advance(self, m: dict, failed: bool) -> None:
                StopAt.n += 1
                if StopAt.n == 25:
                    stop.set()

        return await execute(c, probes={"fake": probe.module}, stop=stop, progress=StopAt())

    first = asyncio.run(stop_after_some())
    assert not first.complete and first.stopped == "interrupted"
    assert 25 <= first.measured < 120
    resumed = asyncio.run(execute(None, resume=first.run_id, out=tmp_path / "o", probes={"fake": probe.module}))
    assert resumed.complete and resumed.already_done == first.measured
    assert resumed.measured == 120 - first.measured
    ms = list(iter_measurements(first.path))
    assert Counter((m["input"], m["repetition"]) for m in ms) == {(u, r): 1 for u in urls for r in (0, 1)}
    meta = (tmp_path / "o" / f"{first.run_id}.meta.json").read_text()
    assert '"status": "complete"' in meta


def test_resume_refuses_a_changed_list(tmp_path):
    lst = _list(tmp_path, ["http://a.example/"])
    c = Campaign(lists=[lst], probes=["fake"], out=str(tmp_path / "o"))
    summary, _ = _run(c, FakeProbe())
    Path(lst).write_text("http://b.example/\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="changed since run"):
        asyncio.run(execute(None, resume=summary.run_id, out=tmp_path / "o", probes={"fake": FakeProbe().module}))


def test_units_are_streamed_not_materialised(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "SHUFFLE_WINDOW", 16)
    urls = [f"http://h{i}.example/" for i in range(3000)]
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"), concurrency=4)
    probe = FakeProbe()
    ahead: list[int] = []
    orig = probe.module.measure

    async def watching(target, net, options):
        # target_from_url ran once per entry in the counting pass; in the run pass it may
        # only run ahead of the measurements by the queue, the workers and one shuffle window
        ahead.append(probe.mapped - 3000 - len(probe.calls))
        return await orig(target, net, options)

    probe.module.measure = watching
    with JsonlWriter(tmp_path / "r.jsonl") as w:
        summary = asyncio.run(Runner(c, new_run_id(), probes={"fake": probe.module}).run(w))
    assert summary.measured == 3000
    assert 0 < max(ahead) <= 2 * 4 + 4 + 2 * 16


def test_vantage_ip_only_when_asked(tmp_path):
    lst = _list(tmp_path, ["http://a.example/"])
    _, plain = _run(Campaign(lists=[lst], probes=["fake"], out=str(tmp_path / "a")), FakeProbe())
    assert "ip" not in plain[0]["vantage"]
    _, asked = _run(Campaign(lists=[lst], probes=["fake"], out=str(tmp_path / "b"), store_vantage_ip=True),
                    FakeProbe())
    assert asked[0]["vantage"]["ip"] == "127.0.0.1"


def test_config_error_from_a_probe_stops_the_run(tmp_path):
    from censorscope.probes.errors import ConfigError as CE

    probe = FakeProbe()

    async def broken(target, net, options):
        raise CE("no resolver given and none found in /etc/resolv.conf")

    probe.module.measure = broken
    c = Campaign(lists=[_list(tmp_path, [f"http://h{i}.example/" for i in range(50)])], probes=["fake"],
                 out=str(tmp_path / "o"), concurrency=4)
    with pytest.raises(ConfigError, match="no resolver given"):
        _run(c, probe)


def test_resume_refuses_while_another_process_writes_and_leaves_the_tail_alone(tmp_path):
    from censorscope.probes.errors import StoreError

    c = Campaign(lists=[_list(tmp_path, ["http://a.example/", "http://b.example/"])], probes=["fake"],
                 out=str(tmp_path / "o"))
    summary, _ = _run(c, FakeProbe())
    with JsonlWriter(summary.path) as other:  # e.g. the original run, still alive
        with open(summary.path, "ab") as f:
            f.write(b'{"half": ')
        with pytest.raises(StoreError, match="another censorscope process"):
            asyncio.run(execute(None, resume=summary.run_id, out=tmp_path / "o", probes={"fake": FakeProbe().module}))
        assert summary.path.read_bytes().endswith(b'{"half": ')
        assert other.lines == 0


def test_first_peer_of_observations():
    from censorscope.measure.runner import _first_peer

    assert _first_peer([{"operation": "http_round_trip", "address": "127.0.0.2:8080"}]) == "127.0.0.2"
    assert _first_peer([{"resolver": "https://doh.example/dns-query"}, {"resolver": "[::1]:53"}]) == "::1"
    assert _first_peer([{"ip": "127.0.0.3", "address": "127.0.0.4:1"}]) == "127.0.0.3"
    assert _first_peer([{"operation": "resolve", "query_name": "a.example"}]) is None


def test_resume_runs_the_retests_an_interrupted_run_still_owed(tmp_path):
    urls = ["http://a.example/", "http://b.example/fail", "http://c.example/fail"]
    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"), concurrency=3)

    class SlowConfirm(Confirm):
        def retests(self, measurement: dict) -> list[Retest]:
            return [dataclasses.replace(r, delay=0.3 if i else 0.0)
                    for i, r in enumerate(super().retests(measurement))]

    async def interrupted() -> object:
        stop = asyncio.Event()

        class StopWhenAllFirstDone:
            def start(self, total: int, done: int) -> None:
                self.left = total

            def advance(self, m: dict, failed: bool) -> None:
                self.left -= 1
                if self.left == 0:
                    # first re-tests (no delay) may already be stored; the delayed second ones are not
                    asyncio.get_running_loop().call_later(0.1, stop.set)

        return await execute(c, probes={"fake": FakeProbe().module}, stop=stop, confirm=SlowConfirm(),
                             progress=StopWhenAllFirstDone())

    first = asyncio.run(interrupted())
    assert first.measured == 3 and first.retests == 2  # attempt 1 of each failing target only
    again = asyncio.run(execute(None, resume=first.run_id, out=tmp_path / "o", probes={"fake": FakeProbe().module},
                                confirm=SlowConfirm()))
    assert again.measured == 0 and again.retests == 2
    ms = list(iter_measurements(first.path))
    for url in urls[1:]:
        rows = [m for m in ms if m["input"] == url]
        assert sorted(m["attempt"] for m in rows) == [0, 1, 2]
        first_id = next(m["measurement_id"] for m in rows if m["attempt"] == 0)
        assert all(m["annotations"]["confirms"] == first_id for m in rows if m["attempt"])
    # nothing is owed any more: a further resume measures nothing
    third = asyncio.run(execute(None, resume=first.run_id, out=tmp_path / "o", probes={"fake": FakeProbe().module},
                                confirm=SlowConfirm()))
    assert third.measured == 0 and third.retests == 0


def test_a_busy_server_does_not_hold_up_the_others(tmp_path):
    # 40 URLs on one host (fewer than the 4 x 8 units that may be parked), 8 on others;
    # per-server limit 2, 8 workers
    busy = [f"http://busy.example/{i}" for i in range(40)]
    others = [f"http://o{i}.example/" for i in range(8)]
    c = Campaign(lists=[_list(tmp_path, busy + others)], probes=["fake"], out=str(tmp_path / "o"),
                 concurrency=8, per_server=2, seed=5)
    probe = FakeProbe(delay=0.02)
    finished: list[str] = []
    orig = probe.module.measure

    async def recording(target, net, options):
        try:
            return await orig(target, net, options)
        finally:
            finished.append(target)

    probe.module.measure = recording
    summary, _ = _run(c, probe)
    assert summary.measured == 48 and probe.max_per_host == 2
    # the other servers were measured while the busy one worked through its backlog
    last_other = max(finished.index(u) for u in others)
    assert last_other < 20, [finished.index(u) for u in others]


def test_units_parked_behind_retests_are_still_measured(tmp_path, monkeypatch):
    # while x.example's only measurements in flight are re-tests (not run by a worker), its
    # first measurements get parked; they must still be handed out before the run ends
    monkeypatch.setattr(runner_mod, "SHUFFLE_WINDOW", 1)  # keep the list order
    urls = (["http://x.example/fail"] + [f"http://y{i}.example/" for i in range(6)]
            + [f"http://x.example/{i}" for i in range(3)])

    class ManyRetests:
        def retests(self, measurement: dict) -> list[Retest]:
            if not measurement["input"].endswith("/fail"):
                return []
            return [Retest("fake", measurement["input"], {}, delay=0.0, reason=f"r{i}") for i in range(4)]

    c = Campaign(lists=[_list(tmp_path, urls)], probes=["fake"], out=str(tmp_path / "o"),
                 concurrency=1, per_server=1)
    summary, ms = _run(c, FakeProbe(delay=0.03), confirm=ManyRetests())
    assert sorted(m["input"] for m in ms if m["attempt"] == 0) == sorted(urls)
    assert summary.complete and summary.measured == 10 and summary.retests == 4
