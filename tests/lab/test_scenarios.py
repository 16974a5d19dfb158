"""Scenario files: every shipped one loads, validation names what is wrong, external files work,
the gfw demo covers the whole default list, every censor behaviour is exercised."""

from __future__ import annotations

import textwrap

import pytest

from censorscope.lab import addressing as A
from censorscope.lab import scenario as S
from censorscope.probes.errors import ConfigError

MINIMAL = """
name = "mine"
description = "a test scenario"
[[site]]
name = "a.example.com"
[[truth]]
target = "https://a.example.com/"
probe = "web"
verdict = "ok"
"""


def _write(tmp_path, text: str):
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(text))
    return p


@pytest.mark.parametrize("name", S.shipped())
def test_every_shipped_scenario_loads(name):
    sc = S.load(name)
    assert sc.name == name
    assert sc.description and sc.sites and sc.truth
    for t in sc.truth:
        assert (t.verdict == "blocked") == (t.method is not None)
    for s in sc.sites:
        assert all(A.in_lab_ranges(a) for a in s.served_addresses)


def test_coverage_of_behaviours_and_negative_controls():
    from censorscope.lab.censor.registry import BEHAVIOURS

    loaded = [S.load(n) for n in S.shipped()]
    assert len(loaded) >= 12
    used = {b for sc in loaded for b in sc.behaviours}
    assert set(BEHAVIOURS) <= used, f"behaviours without a scenario: {set(BEHAVIOURS) - used}"
    negatives = [sc.name for sc in loaded if sc.negative]
    assert len(negatives) >= 4, negatives
    assert {"server-down", "server-reset", "cdn", "slow-server"} <= set(negatives)
    # negative controls cover what they claim
    assert S.load("server-down").site("dead.example.org").server_kind == "down"
    assert S.load("server-reset").site("broken.example.org").server_kind == "reset"
    assert S.load("slow-server").site("sluggish.example.org").server_kind == "slow"
    cdn = S.load("cdn").site("cdn.example.com")
    assert cdn.isp_addresses and set(cdn.isp_addresses).isdisjoint(cdn.addresses)


def test_gfw_hosts_every_default_target_with_truth_for_each_url():
    urls = S.list_urls("default")
    sc = S.load("gfw")
    assert {s.name for s in sc.sites} >= set(urls)
    web_truth = {t.target: t for t in sc.truth if t.probe == "web"}
    for host_urls in urls.values():
        for u in host_urls:
            assert u in web_truth, u
    methods = {t.method for t in sc.truth if t.method}
    assert {"dns.injection", "tls.sni_reset", "tcp.blackhole", "http.reset", "throttled"} <= methods
    assert {"dns_injection", "rst_injection", "residual", "ip_blackhole", "throttle"} <= set(sc.behaviours)
    # blackholed sites have their own addresses: nothing else shares them
    blackholed = {a for c in sc.censor if c["behaviour"] == "ip_blackhole" for a in c["addresses"]}
    victims = {s.name for s in sc.sites if set(s.addresses) & blackholed}
    assert victims == {"www.torproject.org", "bridges.torproject.org", "shadowsocks.org"}


def test_external_file_loads_like_a_shipped_one(tmp_path):
    sc = S.load_file(_write(tmp_path, MINIMAL))
    assert sc.name == "mine" and sc.site("a.example.com").addresses == (A.site_address(0), A.site_address_v6(0))
    assert sc.source.endswith("s.toml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('colour = "red"\n', "unknown key(s) colour"),
        ('[[site]]\nname = "b.example.com"\nadress = "203.0.113.5"\n', "unknown key(s) adress"),
        ('[resolver]\nlies = {}\n', "unknown key(s) lies"),
        ('[servers]\nslow_delay = -1\n', "slow_delay"),
        ('[[site]]\nname = "c.example.com"\naddress = "10.0.0.1"\n', "outside the lab ranges"),
        ('[[site]]\nname = "bad_name!"\n', "not a valid DNS name"),
        ('[[site]]\nname = "d.example.com"\naddress = "198.51.100.40"\n', "not on the server link"),
        ('[[site]]\nname = "e.example.com"\naddress = "203.0.113.10"\n', "belongs to the ISP resolver"),
        ('[[site]]\nname = "f.example.com"\nisp_address = "203.0.113.250"\n', "belongs to the sinkhole"),
        ('[[site]]\nname = "a.example.com"\n', "declared twice"),
        ('[resolver]\nlie = { "a.example.com" = "8.8.8.8" }\n', "outside the lab ranges"),
        ('[resolver]\nlie = { "a.example.com" = "maybe" }\n', "neither an IP address"),
        ('[[censor]]\nbehaviour = "teleport"\n', "unknown behaviour"),
        ('[[censor]]\nbehaviour = "ip_blackhole"\naddresses = ["203.0.113.9"]\nspeed = 3\n', "speed"),
        ('[[censor]]\nnames = ["x"]\n', "behaviour"),
        ('[[truth]]\ntarget = "x"\nprobe = "web"\nverdict = "blocked"\n', "needs a method"),
        ('[[truth]]\ntarget = "x"\nprobe = "web"\nverdict = "blocked"\nmethod = "magic"\n', "unknown method"),
        ('[[truth]]\ntarget = "x"\nprobe = "web"\nverdict = "ok"\nmethod = "dns.injection"\n', "only for"),
        ('[[truth]]\ntarget = "x"\nprobe = "nonsense"\nverdict = "ok"\n', "unknown probe"),
        ('[[truth]]\ntarget = "https://a.example.com/"\nprobe = "web"\nverdict = "ok"\n', "two ground truths"),
        ('[[truth]]\ntarget = "x"\nprobe = "web"\nverdict = "fine"\n', "verdict must be"),
    ],
)
def test_validation_names_the_problem(tmp_path, extra, message):
    text = MINIMAL.replace('[[site]]', extra + "\n[[site]]", 1) if extra.startswith(("colour", "[resolver]", "[servers]")) \
        else MINIMAL + extra
    with pytest.raises(ConfigError) as e:
        S.load_file(_write(tmp_path, text))
    assert message in str(e.value)
    assert "s.toml" in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        S.load_file(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        S.load_file(_write(tmp_path, "name = \n"))
    with pytest.raises(ConfigError, match="no scenario 'nope'"):
        S.load("nope")
    with pytest.raises(ConfigError, match="missing required key 'description'"):
        S.load_file(_write(tmp_path, 'name = "x"\n'))


def test_default_truth_fills_sites_and_guards_forgotten_urls(tmp_path):
    text = MINIMAL.replace("[[truth]]", '[[site]]\nname = "b.example.com"\n[default_truth]\nprobes = ["web", "dns"]\n'
                           "[[truth]]", 1)
    sc = S.load_file(_write(tmp_path, text))
    labels = {(t.target, t.probe): t.label() for t in sc.truth}
    assert labels == {
        ("https://a.example.com/", "web"): "ok", ("a.example.com", "dns"): "ok",
        ("https://b.example.com/", "web"): "ok", ("b.example.com", "dns"): "ok",
    }
    gfw_like = 'name = "g"\ndescription = "d"\nsites_from_list = "default"\n[default_truth]\nprobes = ["web"]\n' \
               '[[truth]]\ntarget = "https://www.bbc.com/"\nprobe = "web"\nverdict = "blocked"\nmethod = "tls.sni_reset"\n'
    with pytest.raises(ConfigError, match="www.bbc.com has explicit web truth but none for https://www.bbc.com/news"):
        S.load_file(_write(tmp_path, gfw_like))


def test_pool_addresses_and_registered_domain_sharing():
    sc = S.parse({"name": "p", "description": "d", "site": [
        {"name": "www.x.co.uk"}, {"name": "x.co.uk"}, {"name": "y.example.org"},
        {"name": "z.example.net", "address": A.site_address(0)}]})
    assert sc.site("www.x.co.uk").addresses == sc.site("x.co.uk").addresses
    assert sc.site("y.example.org").addresses != sc.site("x.co.uk").addresses
    # explicit addresses are never handed out again
    assert A.site_address(0) not in sc.site("x.co.uk").addresses + sc.site("y.example.org").addresses


def test_to_dict_is_json_ready():
    import json

    d = S.load("dns-injection").to_dict()
    assert json.loads(json.dumps(d))["truth"][0] == {
        "target": "blocked.example.com", "probe": "dns", "verdict": "blocked", "method": "dns.injection", "note": ""}


def test_sites_from_a_list_file_next_to_the_scenario(tmp_path):
    (tmp_path / "mylist.txt").write_text("https://one.example.com/a\nhttps://one.example.com/b\nhttp://two.example.org/\n"
                                         "https://203.0.113.9/\n")
    f = _write(tmp_path, 'name = "l"\ndescription = "d"\nsites_from_list = "mylist.txt"\n'
                         '[default_truth]\nprobes = ["web"]\n')
    sc = S.load_file(f)
    assert [s.name for s in sc.sites] == ["one.example.com", "two.example.org"]  # no site for an IP literal
    assert sorted(t.target for t in sc.truth) == [
        "http://two.example.org/", "https://one.example.com/a", "https://one.example.com/b"]
