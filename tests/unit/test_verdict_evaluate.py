"""The pure parts of `lab evaluate`: grading, method aliases, targets and the campaign file."""

from __future__ import annotations

import tomllib

import pytest
from click.testing import CliRunner

from censorscope.lab.evaluate import Row, campaign_toml, expected_input, grade, method_matches, totals
from censorscope.lab.scenario import Truth
from censorscope.measure.campaign import load_campaign


@pytest.mark.parametrize("expected,got,ok", [
    (None, None, True), ("tcp.blackhole", "tcp.blackhole", True), ("tcp.blackhole", "tcp.reset", False),
    ("vpn.openvpn.blocked", "vpn.openvpn.blocked.handshake_drop", True), ("vpn.openvpn.blocked", None, False),
    ("dns.sinkhole", "dns.blockpage", True), ("http.blockpage:http-451", "http.blockpage:http-451", True),
    ("http.blockpage:http-451", "http.blockpage:lab-national", False), ("tls.sni", "tls.sni_reset", False),
    ("tor.blocked", "vpn.tor.blocked.port", True), ("tor.blocked", "vpn.tor.blocked", True),
    ("tor.blocked", "vpn.openvpn.blocked.port", False), ("tor.blocked", "tcp.blackhole", False),
    ("tor.blocked", "vpn.torx.blocked", False),
])
def test_method_matches(expected, got, ok):
    assert method_matches(expected, got) is ok


def test_grade_and_false_blocked():
    assert grade(Truth("x", "web", "ok"), "ok", None)
    assert not grade(Truth("x", "web", "ok"), "inconclusive", None)
    assert grade(Truth("x", "web", "blocked", "dns.injection"), "blocked", "dns.injection")
    assert not grade(Truth("x", "web", "blocked", "dns.injection"), "blocked", "tcp.blackhole")
    r = Row("s", "x", "web", "ok", None, "blocked", "http.diff", False)
    assert r.false_blocked and r.to_json()["false_blocked"]
    assert set(r.to_json()) >= {"scenario", "target", "probe", "expected_verdict", "expected_method", "verdict",
                                "method", "match"}
    assert totals([r, Row("s", "y", "dns", "ok", None, "ok", None, True)]) == "2 rows: 1 match, 1 mismatch (1 false blocked)"


@pytest.mark.parametrize("probe,target,want", [
    ("dns", "blocked.example.com", "blocked.example.com"), ("web", "https://www.example.com/", "https://www.example.com/"),
    ("tcp", "203.0.113.150:443", "203.0.113.150:443"), ("http", "http://news.example.net/search?q=falun",
                                                        "http://news.example.net/search?q=falun"),
])
def test_expected_input_matches_what_the_runner_stores(probe, target, want):
    assert expected_input(probe, target) == want


def test_campaign_file_is_a_valid_campaign(tmp_path):
    lst = tmp_path / "web.txt"
    lst.write_text("https://www.example.com/\n")
    f = tmp_path / "c.toml"
    f.write_text(campaign_toml("baseline", "web", lst, tmp_path / "out", "http://198.51.100.34:8742"))
    doc = tomllib.loads(f.read_text())
    assert doc["confirm"]["enabled"] and doc["run"]["probes"] == ["web"]
    c = load_campaign(f)
    assert c.control_url == "http://198.51.100.34:8742" and c.resolvers == ["203.0.113.10"] and c.confirm


def test_evaluate_help_and_usage():
    from censorscope.measure.cli import cli

    r = CliRunner().invoke(cli, ["lab", "evaluate", "--help"])
    assert r.exit_code == 0 and "--scenario" in r.output and "--all" in r.output and "--json" in r.output


def test_retest_spacing_follows_the_scenarios_residual_blocking():
    from censorscope.lab import scenario as S
    from censorscope.lab.evaluate import MAX_SPACING, SPACING, spacing

    assert spacing(S.load("residual")) == 15.0  # a 10 s penalty box
    gfw_like = S.parse({"name": "x", "description": "x", "site": [{"name": "a.example"}],
                        "censor": [{"behaviour": "residual", "duration": 90.0}]})
    assert spacing(gfw_like) == MAX_SPACING  # 90 s: capped, own residual state is recognised
    assert spacing(S.load("baseline")) == SPACING


def test_followup_waits_out_the_whole_penalty_box():
    from censorscope.lab import scenario as S
    from censorscope.lab.evaluate import SPACING, followup_wait, residual_duration

    long_box = S.parse({"name": "x", "description": "x", "site": [{"name": "a.example"}],
                        "censor": [{"behaviour": "residual", "duration": 90.0}]})
    assert residual_duration(long_box) == 90.0 and followup_wait(long_box) > 90.0  # uncapped, unlike spacing
    assert followup_wait(S.load("residual")) > residual_duration(S.load("residual")) == 10.0
    assert residual_duration(S.load("baseline")) == 0.0 and followup_wait(S.load("baseline")) == SPACING


def test_first_ids_skip_retests_and_torn_lines(tmp_path):
    from censorscope.lab.evaluate import _first_ids

    out = tmp_path / "web-followup"
    out.mkdir()
    (out / "run.jsonl").write_text(
        '{"measurement_id": "a", "attempt": 0}\n{"measurement_id": "b", "attempt": 1, '
        '"annotations": {"confirms": "a"}}\n{"measurement_id": "c"}\n{"torn\n')
    assert _first_ids([out, tmp_path / "missing"]) == {"a", "c"}
