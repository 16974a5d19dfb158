"""Server configuration rendering and the lab PKI, without root (pure functions)."""

from __future__ import annotations

import ssl

from cryptography import x509

from censorscope.lab import addressing as A
from censorscope.lab import pki, servers
from censorscope.lab import scenario as S


def _scenario(**extra):
    data = {"name": "r", "description": "d", "site": [
        {"name": "a.example.com"},
        {"name": "cdn.example.com", "address": ["203.0.113.175"], "isp_address": ["203.0.113.176"]},
        {"name": "slow.example.org", "address": A.SLOW_V4},
    ]}
    data.update(extra)
    return S.parse(data)


def test_zone_has_every_site_address_and_the_ns_glue():
    sc = _scenario()
    zone = servers.zone_text(sc.sites, serial=7).splitlines()
    assert "a.example.com. IN A 203.0.113.100" in zone
    assert "a.example.com. IN AAAA 2001:db8:3::1:100" in zone
    assert "cdn.example.com. IN A 203.0.113.175" in zone  # the origin; the edge is the ISP resolver's
    assert not any("203.0.113.176" in line for line in zone)
    assert f"ns.lab. IN A    {A.AUTH_DNS_V4}" in zone
    assert any("SOA" in line and " 7 " in line for line in zone)


def test_isp_resolver_lies_and_cdn_edges():
    sc = _scenario(resolver={"lie": {"a.example.com": "nxdomain", "b.example.com": "sinkhole",
                                     "c.example.com": ["0.0.0.0", "::"], "d.example.com": "refused"}})
    lines = servers.unbound_local_zones(sc).splitlines()
    assert '    local-zone: "a.example.com." always_nxdomain' in lines
    assert '    local-zone: "d.example.com." always_refuse' in lines
    assert '    local-zone: "b.example.com." redirect' in lines
    assert f'    local-data: "b.example.com. 60 IN A {A.SINKHOLE_V4}"' in lines
    assert f'    local-data: "b.example.com. 60 IN AAAA {A.SINKHOLE_V6}"' in lines
    assert '    local-data: "c.example.com. 60 IN AAAA ::"' in lines
    assert '    local-zone: "cdn.example.com." static' in lines
    assert '    local-data: "cdn.example.com. 60 IN A 203.0.113.176"' in lines
    assert servers.unbound_local_zones(None) == ""


def test_nginx_blocks_cover_web_sites_on_every_address(tmp_path):
    sc = _scenario()
    web = [s for s in sc.sites if s.server_kind == "web"]
    assert [s.name for s in web] == ["a.example.com", "cdn.example.com"]  # the slow site is not nginx's
    certs = {s.name: (tmp_path / f"{s.name}.pem", tmp_path / f"{s.name}.key") for s in web}
    conf = servers.nginx_servers(web, certs, tmp_path, (tmp_path / "d.pem", tmp_path / "d.key"),
                                 (tmp_path / "s.pem", tmp_path / "s.key"))
    assert "listen [2001:db8:3::1:100]:443 ssl;" in conf
    assert "listen 203.0.113.176:443 ssl;" in conf and "listen 203.0.113.175:80;" in conf  # edge and origin
    assert conf.count("default_server") == 4 * 2 + 2 * 2  # ports 80+443: catch-all on 4 addresses, sinkhole on 2
    assert "return 451;" in conf


def test_lab_ca_signs_leaves_that_verify_only_with_it(tmp_path):
    ca = pki.make_ca("test CA")
    cert_pem, key_pem = pki.make_leaf(ca, ["www.example.com", "203.0.113.5"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["www.example.com"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["203.0.113.5"]
    cert.verify_directly_issued_by(ca.cert)
    pki.write_ca(ca, tmp_path)
    assert pki.load_ca(tmp_path).cert == ca.cert
    (tmp_path / "leaf.pem").write_bytes(cert_pem)
    (tmp_path / "leaf.key").write_bytes(key_pem)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")  # the key matches the cert


def test_lab_env_points_every_trust_variable_at_the_lab_ca(tmp_path):
    env = servers.lab_env(tmp_path, {"PATH": "/bin"})
    ca = str(tmp_path / "pki" / "ca.pem")
    assert env["CENSORSCOPE_EXTRA_CA"] == env["SSL_CERT_FILE"] == env["CURL_CA_BUNDLE"] == ca
    assert env["PATH"] == "/bin"
