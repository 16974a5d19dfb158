"""The tls probe against loopback TLS servers: handshake outcome and verification kept apart."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from servers import OTHER_NAME, TEST_NAME

from censorscope.measure.cli import cli
from censorscope.probes import tls
from censorscope.probes.net import Net

pytestmark = pytest.mark.net


def run(target: str, net: Net, **options: object) -> list[dict]:
    return [o.to_dict() for o in asyncio.run(tls.measure(target, net, tls.Options(**options)))]


def handshake_of(target: str, net: Net, **options: object) -> dict:
    connect, hs = run(target, net, **options)
    assert connect["operation"] == "connect" and connect["failure"] is None
    assert hs["operation"] == "tls_handshake" and hs["parent_id"] == connect["id"]
    assert hs["address"] == target
    return hs


def test_valid_certificate_with_sni(net, https_site, pki):
    hs = handshake_of(https_site.server.address, net, sni=TEST_NAME)
    assert hs["failure"] is None
    assert hs["server_name"] == TEST_NAME and https_site.sni == [TEST_NAME]
    assert hs["alpn_offered"] == ["h2", "http/1.1"] and hs["alpn"] == "http/1.1"
    assert hs["tls_version"] in ("TLSv1.2", "TLSv1.3") and hs["cipher"]
    assert hs["verification"] == {"ok": True, "failure": None, "hostname_ok": True, "chain_ok": True,
                                  "detail": None}
    leaf, mid = hs["peer_certificates"]  # the whole chain as sent, not just the leaf
    assert leaf["sha256"] == pki.valid.leaf_sha256
    assert leaf["sans"] == [TEST_NAME, "127.0.0.1"]
    assert leaf["subject"] == f"CN={TEST_NAME},O=censorscope tests"
    assert leaf["issuer"] == mid["subject"] == "CN=censorscope test intermediate CA,O=censorscope tests"
    assert mid["issuer"] == "CN=censorscope test root CA,O=censorscope tests"
    assert leaf["not_before"] < leaf["not_after"] and leaf["not_after"].endswith("Z")
    assert hashlib.sha256(base64.b64decode(leaf["der_b64"])).hexdigest() == leaf["sha256"]


def test_no_sni_checks_the_ip(net, https_site):
    hs = handshake_of(https_site.server.address, net)
    assert hs["server_name"] is None and https_site.sni == [None]
    assert hs["verification"]["ok"] is True  # the test leaf also covers 127.0.0.1


def test_alpn_option(net, https_site):
    hs = handshake_of(https_site.server.address, net, sni=TEST_NAME, alpn=["h2"])
    assert hs["alpn_offered"] == ["h2"] and hs["alpn"] is None


def test_expired_certificate(net, tls_site):
    hs = handshake_of(tls_site("expired").server.address, net, sni=TEST_NAME)
    assert hs["failure"] is None
    assert hs["verification"] == {"ok": False, "failure": "ssl_invalid_certificate", "hostname_ok": True,
                                  "chain_ok": True, "detail": "expired"}


def test_wrong_name_certificate(net, tls_site):
    hs = handshake_of(tls_site("wrong_name").server.address, net, sni=TEST_NAME)
    assert hs["failure"] is None
    v = hs["verification"]
    assert (v["ok"], v["failure"], v["hostname_ok"], v["chain_ok"]) == (False, "ssl_invalid_hostname", False, True)
    assert OTHER_NAME in v["detail"]
    assert hs["peer_certificates"][0]["sans"] == [OTHER_NAME]


def test_forged_certificate_is_handshake_ok_verification_failed(net, tls_site):
    # What TLS interception looks like: the right name, an issuer nobody trusts.
    hs = handshake_of(tls_site("untrusted").server.address, net, sni=TEST_NAME)
    assert hs["failure"] is None
    v = hs["verification"]
    assert (v["ok"], v["failure"], v["hostname_ok"], v["chain_ok"]) == (False, "ssl_unknown_authority", True, False)
    assert hs["peer_certificates"][1]["subject"] == "CN=censorscope untrusted interception CA,O=censorscope tests"


def test_trust_anchor_matters(https_site):
    # Negative control for the above: without the test CA, the valid chain is unknown too.
    hs = handshake_of(https_site.server.address, Net(ca_file=None), sni=TEST_NAME)
    assert hs["verification"]["failure"] == "ssl_unknown_authority"


@pytest.mark.parametrize("server,failure", [
    ("reset_server", "connection_reset"),
    ("eof_server", "eof_error"),
    ("garbage_server", "ssl_failed_handshake"),
    ("silent_server", "generic_timeout_error"),
])
def test_handshake_failures(request, net, server, failure):
    srv = request.getfixturevalue(server)
    hs = handshake_of(srv.address, net, sni=TEST_NAME, timeout=1.0)
    assert hs["failure"] == failure
    assert "verification" not in hs and "peer_certificates" not in hs
    assert hs["server_name"] == TEST_NAME


def test_connect_failure_means_no_handshake(net, refused_address):
    [connect] = run(refused_address, net, sni=TEST_NAME)
    assert connect["failure"] == "connection_refused"


def test_cli(https_site, pki, monkeypatch):
    monkeypatch.setenv("CENSORSCOPE_EXTRA_CA", pki.ca)
    res = CliRunner().invoke(cli, ["probe", "tls", https_site.server.address, "--sni", TEST_NAME,
                                   "--alpn", "http/1.1", "--json"])
    assert res.exit_code == 0, res.output
    connect, hs = json.loads(res.output)["observations"]
    assert hs["verification"]["ok"] is True and hs["alpn_offered"] == ["http/1.1"]


# --- verification logic on its own -------------------------------------------------


def _leaf_with(names: list[str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    sans = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "cn.example.test")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256())


@pytest.mark.parametrize("names,host,ok", [
    (["a.example.test"], "a.example.test", True),
    (["a.example.test"], "A.Example.Test.", True),
    (["*.example.test"], "a.example.test", True),
    (["*.example.test"], "example.test", False),
    (["*.example.test"], "a.b.example.test", False),
    (["a*.example.test"], "ab.example.test", False),
    (["203.0.113.5"], "203.0.113.5", True),
    (["203.0.113.5"], "203.0.113.6", False),
    (["a.example.test"], "203.0.113.5", False),
    ([], "cn.example.test", False),  # no Common Name fallback
])
def test_hostname_matches(names, host, ok):
    assert tls.hostname_matches(_leaf_with(names), host) is ok


def test_verify_chain_edge_cases(pki):
    assert tls.verify_chain([], TEST_NAME, pki.ca)["failure"] == "ssl_invalid_certificate"
    assert tls.verify_chain([b"junk"], TEST_NAME, pki.ca)["failure"] == "ssl_invalid_certificate"


def test_idn_sni_is_sent_as_idna(net, https_site):
    hs = handshake_of(https_site.server.address, net, sni="тест.censorscope.test")
    assert hs["server_name"] == "xn--e1aybc.censorscope.test" and https_site.sni == ["xn--e1aybc.censorscope.test"]
    assert hs["verification"]["failure"] == "ssl_invalid_hostname"  # the test leaf is not for that name
