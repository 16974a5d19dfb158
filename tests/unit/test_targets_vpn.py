"""Target lists accept the VPN probes' own schemes; website probes skip those entries."""

from __future__ import annotations

import pytest

from censorscope.measure.targets import iter_targets, normalize_url
from censorscope.probes import registry


def test_vpn_entries_kept_as_written_with_lower_case_scheme():
    assert normalize_url("OpenVPN://203.0.113.40:1194?proto=udp") == "openvpn://203.0.113.40:1194?proto=udp"
    assert normalize_url("quic://203.0.113.40:443?sni=quic.lab") == "quic://203.0.113.40:443?sni=quic.lab"
    with pytest.raises(ValueError, match="without a host"):
        normalize_url("wireguard://")
    with pytest.raises(ValueError, match="unsupported scheme"):
        normalize_url("gopher://example.org/")


def test_a_mixed_list_feeds_each_probe_its_own_entries(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("https://www.example.org/\nopenvpn://203.0.113.40:1194?proto=tcp\nssh://203.0.113.40:22\n"
                   "openvpn://203.0.113.40:1194?proto=tcp\n")
    urls = [t.url for t in iter_targets([str(lst)], strict=True)]
    assert urls == ["https://www.example.org/", "openvpn://203.0.113.40:1194?proto=tcp", "ssh://203.0.113.40:22"]
    openvpn, ssh, web = registry.load("openvpn"), registry.load("ssh"), registry.load("web")
    assert [openvpn.target_from_url(u) for u in urls] == [None, urls[1], None]
    assert [ssh.target_from_url(u) for u in urls] == [None, None, urls[2]]
    assert web.target_from_url(urls[1]) is None
