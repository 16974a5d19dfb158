"""Block-page and DNS fingerprints: each entry matches its own sample and no ordinary page."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from censorscope.analysis.verdicts.fingerprints import (
    dns_fingerprints,
    http_fingerprints,
    is_bogon,
    match_blockpage,
    match_dns,
    match_not_blockpage,
    page_matches,
)

DOC = json.loads((resources.files("censorscope.data") / "blockpages.json").read_text(encoding="utf-8"))
DNS_DOC = json.loads((resources.files("censorscope.data") / "dns_fingerprints.json").read_text(encoding="utf-8"))

NGINX_DEFAULT = """<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title>
<style>html { color-scheme: light dark; } body { width: 35em; margin: 0 auto; }</style></head>
<body><h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and working. Further configuration is required.</p>
<p>For online documentation and support please refer to <a href="http://nginx.org/">nginx.org</a>.</p>
<p><em>Thank you for using nginx.</em></p></body></html>"""
PARKED = """<html><head><title>example-domain.com</title></head><body>
<h1>example-domain.com</h1><p>This domain may be for sale. Related searches: cheap flights, insurance quotes.</p>
<script src="//sedoparking.com/frmpark/example-domain.com/park.js"></script></body></html>"""
NEWS = """<html><head><title>Daily Herald - News, politics and sport</title></head><body>
<nav><a href="/world">World</a> <a href="/politics">Politics</a> <a href="/tech">Technology</a></nav>
<article><h2>Parliament debates internet access bill</h2><p>Lawmakers argued on Tuesday over a bill that would
let regulators order providers to block websites. Critics said access to information was a right; the ministry
said the page blocking rules would only apply to court orders. Our reporter spoke to people in Kazan and
Tehran about VPNs and filtering. Read more about censorship, firewalls and the law nr. 5651 debate.</p></article>
<footer>&copy; Daily Herald. Server status: OK</footer></body></html>"""
ORDINARY = {"nginx default page": NGINX_DEFAULT, "parked domain": PARKED, "news page": NEWS}


def _rt(example):
    loc = example.get("location")
    return {"operation": "http_round_trip", "id": 1, "url": "http://x/", "status": example.get("status", 200),
            "headers": example.get("headers", []) + ([["Location", loc]] if loc else []),
            "body_head": example.get("body", ""), "hops": []}


@pytest.mark.parametrize("entry", DOC["blockpages"], ids=lambda e: e["id"])
def test_each_blockpage_matches_its_example_and_cites_a_source(entry):
    assert entry["source"] and ("country" in entry or "product" in entry)
    fp = next(f for f in http_fingerprints()[0] if f.id == entry["id"])
    ex = entry["example"]
    loc = ex.get("location")
    assert page_matches(fp, body=ex.get("body", ""), headers=ex.get("headers", []), locations=[loc] if loc else [],
                        status=ex.get("status", 200))
    found = match_blockpage(_rt(ex))
    assert found is not None


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_no_blockpage_matches_ordinary_pages(name):
    rt = {"status": 200, "headers": [["Server", "nginx/1.22.1"], ["Content-Type", "text/html"]],
          "body_head": ORDINARY[name], "hops": []}
    assert match_blockpage(rt) is None


@pytest.mark.parametrize("name,fp_id", [("nginx default page", "nginx-default"), ("parked domain", "parked-domain")])
def test_known_look_alikes_are_recognised(name, fp_id):
    fp = match_not_blockpage({"status": 200, "headers": [], "body_head": ORDINARY[name]})
    assert fp is not None and fp.id == fp_id


@pytest.mark.parametrize("entry", DOC["not_blockpages"], ids=lambda e: e["id"])
def test_look_alikes_match_their_examples_but_are_not_block_pages(entry):
    assert match_not_blockpage(_rt(entry["example"])).id == entry["id"]
    assert match_blockpage(_rt(entry["example"])) is None


def test_required_countries_and_products_are_covered():
    countries = {e.get("country") for e in DOC["blockpages"]}
    assert {"CN", "IR", "RU", "TR", "ID", "KR", "IN", "PK"} <= countries
    products = " ".join(e.get("product", "") for e in DOC["blockpages"]).lower()
    for p in ("fortiguard", "netsweeper", "blue coat", "sophos", "forcepoint", "umbrella", "palo alto"):
        assert p in products, p


def test_ids_are_unique():
    ids = [e["id"] for e in DOC["blockpages"] + DOC["not_blockpages"]]
    assert len(ids) == len(set(ids))
    dns_ids = [e["id"] for e in DNS_DOC["fingerprints"]]
    assert len(dns_ids) == len(set(dns_ids))


@pytest.mark.parametrize("entry", DNS_DOC["fingerprints"], ids=lambda e: e["id"])
def test_each_dns_fingerprint_matches_its_values(entry):
    assert entry["kind"] in ("blockpage", "forged") and entry["source"]
    for a in entry["match"].get("addresses", []):
        assert match_dns(a).id == entry["id"]
    for n in entry["match"].get("names", []):
        assert match_dns(n + ".").id == entry["id"]
    import ipaddress
    for net in entry["match"].get("networks", []):
        first = str(next(ipaddress.ip_network(net).hosts()))
        assert match_dns(first).id == entry["id"]


@pytest.mark.parametrize("addr", ["203.0.113.100", "198.51.100.2", "2001:db8:3::80", "93.184.216.34", "example.com"])
def test_ordinary_answers_match_no_dns_fingerprint(addr):
    assert match_dns(addr) is None


def test_dns_fingerprints_cover_iran_sinkholes():
    assert {match_dns(f"10.10.34.{i}").id for i in (34, 35, 36)} == {"ir-national-blockpage"}
    assert len(dns_fingerprints()) == len(DNS_DOC["fingerprints"])


@pytest.mark.parametrize("addr,bogon", [("0.0.0.0", True), ("127.0.0.1", True), ("10.10.34.35", True),
                                        ("192.168.1.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
                                        ("fe80::1", True), ("203.0.113.80", False), ("198.51.100.9", False),
                                        ("2001:db8::1", False), ("93.184.216.34", False), ("not-an-ip", False)])
def test_bogons(addr, bogon):
    assert is_bogon(addr) is bogon
