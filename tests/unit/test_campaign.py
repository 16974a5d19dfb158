"""Campaign files: keys, types, relative paths, flag overrides, metadata round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from censorscope.measure.campaign import Campaign, load_campaign
from censorscope.probes.errors import ConfigError

FULL = """
name = "weekly-news"
[targets]
lists = ["lists/news.txt", "default"]
urls = ["https://example.org/"]
strict = true
[run]
probes = ["dns", "tcp"]
repeat = 3
concurrency = 20
per_server = 2
timeout = 7
seed = 42
out = "res"
resolvers = ["127.0.0.1:5353"]
[vantage]
cc = "xx"
asn = 64500
network = "Example ISP"
[control]
url = "https://control.example/"
token = "s3cret"
[probe.dns]
transport = "udp"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_full_campaign(tmp_path):
    c = load_campaign(_write(tmp_path, FULL)).validate()
    assert c.name == "weekly-news"
    assert c.lists == [str(tmp_path / "lists/news.txt"), "default"]  # relative to the campaign file
    assert c.urls == ["https://example.org/"] and c.strict is True
    assert (c.probes, c.repeat, c.concurrency, c.per_server, c.timeout, c.seed) == (["dns", "tcp"], 3, 20, 2, 7.0, 42)
    assert c.out == str(tmp_path / "res")
    assert c.resolvers == ["127.0.0.1:5353"]
    assert (c.vantage.cc, c.vantage.asn, c.vantage.network) == ("XX", "AS64500", "Example ISP")
    assert (c.control_url, c.control_token) == ("https://control.example/", "s3cret")
    assert c.probe_options == {"dns": {"transport": "udp"}}


def test_flags_override_the_file(tmp_path):
    c = load_campaign(_write(tmp_path, FULL))
    o = c.override(concurrency=5, probes=["http"], cc="yy", lists=None, seed=None, asn="AS1")
    assert (o.concurrency, o.probes, o.vantage.cc, o.vantage.asn) == (5, ["http"], "YY", "AS1")
    assert o.lists == c.lists and o.seed == 42 and o.vantage.network == "Example ISP"
    assert c.concurrency == 20 and c.vantage.cc == "XX"  # the original is untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1", r"unknown key\(s\) colour in top level"),
        ("[run]\nconcurency = 3", r"unknown key\(s\) concurency in \[run\]"),
        ("[targets]\nlist = ['a']\nurl = 'x'", r"unknown key\(s\) list, url in \[targets\]"),
        ("[vantage]\ncountry = 'XX'", r"unknown key\(s\) country in \[vantage\]"),
        ("[run]\nrepeat = 'three'", "run.repeat must be int"),
        ("[run]\nrepeat = true", "run.repeat must be int"),
        ("[targets]\nlists = [1]", "targets.lists must be a list of strings"),
        ("[run\n", "invalid TOML"),
        ("run = 3", r"\[run\] must be a table"),
        ("[probe]\ndns = 3", r"\[probe.NAME\] sections must be tables"),
    ],
)
def test_bad_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_campaign(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lists": [], "urls": []}, "no targets"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"per_server": -1}, "per_server must be"),
        ({"repeat": 0}, "repeat must be"),
        ({"timeout": 0.0}, "timeout must be a positive"),
        ({"resolvers": ["1.2.3.4:99999"]}, "bad resolver"),
        ({"probes": []}, "no probes"),
        ({"control_token": "t"}, "without a control URL"),
    ],
)
def test_validation(changes, message):
    c = Campaign(urls=["https://example.org/"]).override(**changes)
    with pytest.raises(ConfigError, match=message):
        c.validate()


def test_bad_vantage_values():
    with pytest.raises(ConfigError, match="two-letter"):
        Campaign(urls=["a.example"]).override(cc="XYZ").validate()
    with pytest.raises(ConfigError, match="AS64500"):
        Campaign(urls=["a.example"]).override(asn="ASxyz").validate()


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_campaign(tmp_path / "none.toml")


def test_defaults():
    c = Campaign(lists=["default"]).validate()
    assert c.probes == ["web"] and c.out == "results" and c.repeat == 1 and c.store_vantage_ip is False


def test_metadata_round_trip_never_stores_the_token(tmp_path):
    c = load_campaign(_write(tmp_path, FULL))
    d = c.to_dict()
    assert d["control_token"] is None and d["control_token_set"] is True
    assert "s3cret" not in repr(d)
    back = Campaign.from_dict(d)
    assert back.control_token is None
    back.control_token = c.control_token
    assert back == c
    with pytest.raises(ConfigError, match="unknown campaign keys"):
        Campaign.from_dict({**d, "bogus": 1})
