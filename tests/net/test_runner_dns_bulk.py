"""DNS-over-UDP campaigns go through the bulk engine, with the per-target path's records."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from dns_servers import UDPServer, answer

from censorscope.measure import runner as runner_mod
from censorscope.measure import runner_bulk
from censorscope.measure.campaign import Campaign
from censorscope.measure.runs import execute
from censorscope.measure.store import iter_measurements

pytestmark = pytest.mark.net


def _behaviour(query):
    n = int(str(query.question[0].name).split(".")[0].removeprefix("s")) % 250
    return [(0.0, answer(query, f"198.51.100.{n + 1}"), "server")]


@pytest.fixture
def resolver():
    with UDPServer(_behaviour) as server:
        yield server


def _campaign(tmp_path, resolver, n=300, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    lst = tmp_path / "names.txt"
    lst.write_text("".join(f"http://s{i}.example/page\n" for i in range(n)) + "http://127.0.0.1/\n", encoding="utf-8")
    return Campaign(lists=[str(lst)], probes=["dns"], resolvers=[resolver.address], out=str(tmp_path / "out"),
                    concurrency=64, **kw)


def test_bulk_path_measures_every_name_once(tmp_path, resolver, monkeypatch):
    calls = []
    real = runner_bulk.resolve_many

    async def counting(*args, **kwargs):
        calls.append(args[1])
        return await real(*args, **kwargs)

    monkeypatch.setattr(runner_bulk, "resolve_many", counting)
    c = _campaign(tmp_path, resolver, repeat=2, probe_options={"dns": {"hold_window": 0.05, "timeout": 2.0}})
    summary = asyncio.run(execute(c))
    assert calls == [resolver.address, resolver.address]  # one pass per repetition
    assert summary.complete and summary.measured == 600 and summary.per_failure == {"ok": 600}
    ms = list(iter_measurements(summary.path))
    assert Counter((m["input"], m["repetition"]) for m in ms) == {
        (f"s{i}.example", r): 1 for i in range(300) for r in (0, 1)}
    m = next(m for m in ms if m["input"] == "s7.example")
    assert m["probe"] == "dns" and m["vantage"]["resolver"] == resolver.address
    assert m["annotations"] == {"url": "http://s7.example/page"}
    (obs,) = m["observations"]
    assert obs["operation"] == "dns_query" and obs["addresses"] == ["198.51.100.8"]
    # a resume finds everything done and sends nothing
    again = asyncio.run(execute(None, resume=summary.run_id, out=tmp_path / "out"))
    assert again.measured == 0 and again.already_done == 600 and again.complete


def test_bulk_and_per_target_records_have_the_same_shape(tmp_path, resolver, monkeypatch):
    opts = {"dns": {"hold_window": 0.05, "timeout": 2.0}}
    bulk = asyncio.run(execute(_campaign(tmp_path / "a", resolver, n=5, probe_options=opts)))
    monkeypatch.setattr(runner_mod, "bulk_dns_options", lambda runner: None)
    single = asyncio.run(execute(_campaign(tmp_path / "b", resolver, n=5, probe_options=opts)))
    b = {m["input"]: m for m in iter_measurements(bulk.path)}
    s = {m["input"]: m for m in iter_measurements(single.path)}
    assert b.keys() == s.keys()
    for name in b:
        assert b[name].keys() == s[name].keys()
        assert [set(o) for o in b[name]["observations"]] == [set(o) for o in s[name]["observations"]]
        assert b[name]["observations"][0]["addresses"] == s[name]["observations"][0]["addresses"]


def test_other_transports_and_controls_use_the_per_target_path(tmp_path, resolver):
    from censorscope.measure.runner import Runner, bulk_dns_options

    c = _campaign(tmp_path, resolver, n=1)
    assert bulk_dns_options(Runner(c, "r")) is not None
    assert bulk_dns_options(Runner(c.override(probe_options={"dns": {"transport": "tcp"}}), "r")) is None
    assert bulk_dns_options(Runner(c.override(resolvers=[]), "r")) is None

    class Control:
        async def control_for(self, probe, target, options):
            return None

    assert bulk_dns_options(Runner(c, "r", control=Control())) is None


@pytest.mark.parametrize("start", [1764355555.123456, 1764355555.9999996, 1e9, 1764355599.0000004, 1764355600.5])
def test_bulk_envelope_is_the_runners(tmp_path, resolver, start):
    """The bulk path's cheaper envelope equals Runner.envelope (records.build_measurement) but for the id's random part."""
    from censorscope.measure.runner import Runner, Unit

    c = _campaign(tmp_path, resolver, n=1).override(name="camp", cc="ZZ", asn="AS64500", network="lab net")
    runner = Runner(c, "run-1")
    envelopes = runner_bulk._Envelopes(runner, resolver.address)
    unit = Unit("dns", "s1.example", 2, resolver.address, "http://s1.example/", "NEWS")
    observations = [{"id": 1}]
    for _ in range(3):  # the per-second cache and the random pool are reused
        ours = envelopes.build(unit, observations, start, 0.1234567, {"url": unit.url})
        theirs = runner.envelope(unit, observations, start, 0.1234567, annotations={"url": unit.url})
        assert list(ours) == list(theirs)
        assert ours["measurement_id"].rpartition("_")[0] == theirs["measurement_id"].rpartition("_")[0]
        assert len(ours["measurement_id"].rpartition("_")[2]) == 16
        ours.pop("measurement_id")
        theirs.pop("measurement_id")
        assert ours == theirs
    ids = {envelopes.build(unit, observations, start, 0.1, {})["measurement_id"] for _ in range(2000)}
    assert len(ids) == 2000  # fresh random bits every time, across pool refills


def test_reported_as_is_normalize_name():
    from censorscope.probes.dns import normalize_name
    from censorscope.probes.errors import InvalidTarget

    for target in ("s1.example", "xn--bcher-kva.example", "bücher.example", " pad.example ", "dot.example.", "a..b",
                   ""):
        try:
            expected = normalize_name(target)
        except InvalidTarget:
            expected = target
        assert runner_bulk._reported_as(target) == expected
