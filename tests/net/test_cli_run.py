"""``censorscope run`` and ``censorscope lists`` through click's CliRunner."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from censorscope.measure.cli import cli

pytestmark = pytest.mark.net


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_help():
    r = _invoke("run", "--help")
    assert r.exit_code == 0
    for opt in ("--list", "--probe", "--out", "--concurrency", "--repeat", "--resolver", "--resume", "--seed",
                "--per-server", "--timeout", "--cc", "--asn", "--network", "--store-vantage-ip", "--strict",
                "--control", "--control-token"):
        assert opt in r.output, opt


def test_lists_help():
    assert _invoke("lists", "--help").exit_code == 0
    r = _invoke("lists", "show", "--help")
    assert r.exit_code == 0 and "FILE|default" in r.output


def test_lists_show(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "https://a.example/,NEWS,News Media,2020-01-01,x,\n"
        "https://b.example/,NEWS,News Media,2020-01-01,x,\n"
        "gopher://c.example/,HUMR,Human Rights Issues,2020-01-01,x,\n"
        "https://d.example/,HUMR,Human Rights Issues,2020-01-01,x,\n",
        encoding="utf-8",
    )
    r = _invoke("lists", "show", str(f))
    assert r.exit_code == 0
    assert f"{f}: 3 targets, 1 invalid lines, 0 duplicates" in r.output
    assert re.search(r"^  NEWS +2$", r.output, re.M) and re.search(r"^  HUMR +1$", r.output, re.M)
    assert f"{f}:4: unsupported scheme 'gopher'" in r.output
    data = json.loads(_invoke("lists", "show", str(f), "--json").output)
    assert data["categories"] == {"NEWS": 2, "HUMR": 1} and data["invalid"] == 1
    r = _invoke("lists", "show", str(f), "--strict")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and f"{f}:4:" in r.output


def test_lists_show_default():
    r = _invoke("lists", "show", "default")
    assert r.exit_code == 0 and "default: " in r.output and "ANON" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--list", "/nonexistent/list.txt", "--probe", "tcp"], "no such file"),
        (["run", "--list", "LIST", "--probe", "nope"], "unknown probe 'nope'"),
        (["run", "--list", "LIST", "--probe", "tcp", "--concurrency", "0"], "concurrency must be"),
        (["run", "--list", "LIST", "--probe", "tcp", "--concurrency", "many"], "'many' is not a valid integer"),
        (["run", "--list", "LIST", "--probe", "tcp", "--bogus"], "No such option"),
        (["run", "--list", "LIST", "--probe", "tcp", "--cc", "France"], "two-letter"),
        (["run", "--list", "LIST", "--probe", "tcp", "--resolver", "1.2.3.4:0"], "bad resolver"),
        (["run", "--probe", "tcp"], "no targets"),
        (["run", "CAMPAIGN"], "unknown key(s) concurency in [run]"),
        (["run", "--resume", "20261128T153000Z-abcdef", "--probe", "tcp"], "drop --probe"),
        (["run", "--resume", "20261128T153000Z-abcdef", "--out", "OUT"], "no run 20261128T153000Z-abcdef"),
        (["run", "--resume", "../../etc/passwd"], "bad run id"),
        (["run", "--list", "BADLIST", "--probe", "dns", "--strict"], ":2: unsupported scheme"),
        (["run", "--list", "LIST", "--probe", "tcp", "--control-token", "t"], "without a control URL"),
        (["lists", "show", "/nonexistent.txt"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # the default --out is ./results
    lst = tmp_path / "l.txt"
    lst.write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_text("http://127.0.0.1:9/\nftp://127.0.0.1/\n", encoding="utf-8")
    camp = tmp_path / "c.toml"
    camp.write_text("[targets]\nurls = ['http://127.0.0.1:9/']\n[run]\nconcurency = 3\n", encoding="utf-8")
    subst = {"LIST": str(lst), "BADLIST": str(bad), "CAMPAIGN": str(camp), "OUT": str(tmp_path)}
    r = CliRunner().invoke(cli, [subst.get(a, a) for a in args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert r.output.strip().count("\n") == 0, r.output  # exactly one line
    assert r.output.startswith("Error: ")
    assert "Traceback" not in r.output
    assert not list(tmp_path.glob("results*"))  # nothing created for bad input


def test_run_end_to_end_on_loopback(tmp_path, monkeypatch, http_site, reset_server):
    monkeypatch.chdir(tmp_path)
    lst = tmp_path / "l.txt"
    lst.write_text(
        f"{http_site.url('/')}\n{http_site.url('/a')}\nhttp://127.0.0.1:{reset_server.port}/\nnot a url\n",
        encoding="utf-8",
    )
    r = CliRunner().invoke(cli, ["run", "--list", str(lst), "--probe", "http", "--cc", "xx", "--asn", "64500",
                                 "--timeout", "5", "--seed", "3"])
    assert r.exit_code == 0, r.output
    out = r.output
    run_id = re.search(r"^run (\d{8}T\d{6}Z-[0-9a-f]{6}): 3 measured this time, 0 already done, 3 planned", out, re.M)
    assert run_id, out
    assert f"warning: {lst}:4: whitespace inside the entry" in out  # invalid lines shown with file:line
    assert "progress: 3 to measure (0 already done)" in out  # plain log lines when not on a terminal
    assert "per probe: http=3" in out
    assert re.search(r"^outcomes: ok=2, (connection_reset|eof_error)=1$", out, re.M), out
    path = tmp_path / "results" / f"{run_id.group(1)}.jsonl"
    assert f"results: results/{path.name}" in out
    ms = [json.loads(line) for line in path.read_text().splitlines()]
    assert {m["vantage"]["cc"] for m in ms} == {"XX"} and {m["vantage"]["asn"] for m in ms} == {"AS64500"}
    assert all("ip" not in m["vantage"] for m in ms)
    meta = json.loads((tmp_path / "results" / f"{run_id.group(1)}.meta.json").read_text())
    assert meta["status"] == "complete" and meta["campaign"]["seed"] == 3
