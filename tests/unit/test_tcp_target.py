"""tcp campaign inputs: IP-literal URLs become IP:PORT; names are skipped (tcp never resolves)."""

from censorscope.probes.tcp import target_from_url


def test_ip_literal_urls():
    assert target_from_url("http://203.0.113.5/") == "203.0.113.5:80"
    assert target_from_url("https://203.0.113.5/x") == "203.0.113.5:443"
    assert target_from_url("http://127.0.0.1:8080/a") == "127.0.0.1:8080"
    assert target_from_url("https://[2001:db8::1]:8443/") == "[2001:db8::1]:8443"


def test_names_and_oddities_are_skipped():
    assert target_from_url("https://example.org/") is None
    assert target_from_url("ftp://203.0.113.5/") is None
    assert target_from_url("not a url") is None
