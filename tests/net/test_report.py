"""Verdicts and ``censorscope report`` on measurements made by the REAL probes on loopback.

Each case runs a probe against a loopback server that behaves like a censor
(injected DNS answer, reset on the ClientHello or request, block page) and
the same probe against a clean server as the control, then checks the
verdict and the report's three output forms.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest
from click.testing import CliRunner
from servers import TEST_NAME

from censorscope.analysis import verdicts
from censorscope.measure.cli import cli
from censorscope.measure.cli_probe import run_probe
from censorscope.probes import registry

pytestmark = pytest.mark.net

LAB_PAGE = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Access restricted</title></head>\n"
            "<body><h1>Access to this resource is restricted</h1>\n<p>Access to the requested resource has been "
            "restricted by decision of the National Registry of Prohibited Content (censorscope lab).</p>"
            "</body></html>\n")


def probe(name, target, net, **options):
    module = registry.load(name)
    opts = module.Options(**options)
    return asyncio.run(run_probe(module, target, net, opts))


def with_control(m, control):
    m = dict(m)
    m["control"] = {"observations": control["observations"], "failure": None} if control else None
    return m


async def blockpage_handler(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    body = LAB_PAGE.encode()
    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()


@pytest.fixture
def measured(net, http_site, https_site, reset_server, refused_address, blackhole_address, start_dns,
             start_server):
    """{case: (measurement, expected verdict, expected method)} from real probe runs."""
    clean = start_dns({TEST_NAME: ["127.0.0.1"]})
    injecting = start_dns({TEST_NAME: ["127.0.0.1"]}, inject={TEST_NAME: ["127.0.0.2"]})
    url = https_site.url("/")
    control_web = probe("web", url, net, resolver=clean.address, hold_window=0.3)
    blockpage = start_server(blockpage_handler)
    cases = {
        "web-ok": (with_control(probe("web", url, net, resolver=clean.address, hold_window=0.3), control_web),
                   "ok", None),
        "web-injection": (with_control(probe("web", url, net, resolver=injecting.address, hold_window=0.3),
                                       control_web), "blocked", "dns.injection"),
        "tls-reset": (with_control(probe("tls", reset_server.address, net, sni=TEST_NAME),
                                   probe("tls", https_site.server.address, net, sni=TEST_NAME)),
                      "blocked", "tls.sni_reset"),
        "http-reset": (with_control(probe("http", f"http://{reset_server.address}/", net),
                                    probe("http", http_site.url("/"), net)), "blocked", "http.reset"),
        "http-blockpage": (with_control(probe("http", f"http://{blockpage.address}/", net), None),
                           "blocked", "http.blockpage:lab-national"),
        "tcp-down": (with_control(probe("tcp", refused_address, net), probe("tcp", refused_address, net)),
                     "down", None),
        "tcp-no-control": (with_control(probe("tcp", blackhole_address, net, timeout=1.0), None),
                           "inconclusive", None),
    }
    return cases


def test_real_probe_measurements_get_the_right_verdicts(measured):
    df = verdicts([m for m, _, _ in measured.values()])
    got = {r.measurement_id: (r.verdict, r.method, r.evidence) for r in df.itertuples()}
    for case, (m, verdict, method) in measured.items():
        v, meth, evidence = got[m["measurement_id"]]
        assert (v, meth) == (verdict, method), f"{case}: {evidence}"
        assert "#" in evidence, f"{case}: evidence names no observation: {evidence}"


def test_report_outputs(measured, tmp_path):
    run = tmp_path / "results"
    run.mkdir()
    lines = [json.dumps(m) for m, _, _ in measured.values()]
    (run / "run1.jsonl").write_text("\n".join(lines) + "\n" + lines[0][: len(lines[0]) // 2])
    runner = CliRunner()

    res = runner.invoke(cli, ["report", "--json", str(run)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in res.stdout.splitlines() if ln.strip()]
    assert len(rows) == len(measured)
    assert set(rows[0]) == {"measurement_id", "input", "probe", "vantage_cc", "vantage_asn", "verdict", "method",
                            "confidence", "evidence", "rules_version"}
    by_id = {r["measurement_id"]: r for r in rows}
    for m, verdict, method in measured.values():
        assert (by_id[m["measurement_id"]]["verdict"], by_id[m["measurement_id"]]["method"]) == (verdict, method)
    assert "torn last line" in res.stderr and "run1.jsonl:8" in res.stderr

    res = runner.invoke(cli, ["report", "--csv", str(run / "run1.jsonl")])
    assert res.exit_code == 0
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(table) == len(measured) and {r["verdict"] for r in table} == {"ok", "blocked", "down", "inconclusive"}

    res = runner.invoke(cli, ["report", str(run)])
    assert res.exit_code == 0
    assert "dns.injection" in res.stdout and "tls.sni_reset" in res.stdout
    assert f"{len(measured)} verdicts: 1 ok, 1 down, 4 blocked, 1 inconclusive" in res.stdout


def test_report_usage_errors(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["report"]).exit_code == 2
    assert runner.invoke(cli, ["report", str(tmp_path / "missing")]).exit_code == 2
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    assert runner.invoke(cli, ["report", "--json", "--csv", str(f)]).exit_code == 2
    res = runner.invoke(cli, ["report", str(f)])
    assert res.exit_code == 0 and "no measurements" in res.stdout
    assert runner.invoke(cli, ["report", "--help"]).exit_code == 0
    assert runner.invoke(cli, ["export", "--help"]).exit_code == 0
