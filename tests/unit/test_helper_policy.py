"""The helper's address policy and token bucket, without sockets."""

from __future__ import annotations

import pytest

from censorscope.measure.helper import BadRequest, TokenBucket, clamp_options, options_from_json
from censorscope.measure.helper_policy import AddressPolicy
from censorscope.probes import http, throughput


@pytest.mark.parametrize(("ip", "fragment"), [
    ("10.0.0.1", "private"), ("172.16.5.5", "private"), ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"), ("0.0.0.0", "unspecified"),
    ("::", "unspecified"), ("198.51.100.7", "documentation"), ("203.0.113.1", "documentation"),
    ("192.0.2.1", "documentation"), ("2001:db8::1", "documentation"), ("fd00::1", "private"),
    ("100.64.0.1", "CGNAT"), ("198.18.0.1", "private"), ("::ffff:10.0.0.1", "embedded"),
    ("2002:0a00:0001::1", "embedded"),  # 6to4 around 10.0.0.1
    ("255.255.255.255", "reserved"), ("fe80::1%eth0", "link-local"), ("not-an-ip", "not an IP"),
])
def test_refused(ip, fragment):
    reason = AddressPolicy.build().refusal(ip)
    assert reason is not None and fragment in reason, reason


@pytest.mark.parametrize("ip", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"])
def test_global_addresses_allowed(ip):
    assert AddressPolicy.build().refusal(ip) is None


def test_allow_and_always():
    p = AddressPolicy.build(allow=["127.0.0.0/8", "2001:db8::/32"], always=["10.255.255.53"])
    assert p.refusal("127.9.9.9") is None and p.refusal("2001:db8:3::1") is None
    assert p.refusal("10.255.255.53") is None and p.refusal("10.255.255.54") is not None
    assert p.refusal("::ffff:127.0.0.1") is None  # mapped inside an allowed network
    with pytest.raises(ValueError):
        AddressPolicy.build(allow=["nonsense"])


def test_token_bucket_burst_refill_and_retry_after():
    now = [100.0]
    b = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert b.take("b") == 0.0  # per client
    now[0] += 0.5
    assert b.take("a") == 0.0
    now[0] += 100
    assert [b.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refilled up to the burst, not beyond


def test_token_bucket_memory_bounded():
    now = [0.0]
    b = TokenBucket(rate=1.0, burst=2, clock=lambda: now[0], max_clients=100)
    for i in range(1000):
        b.take(f"c{i}")
        now[0] += 0.001
    assert len(b._buckets) <= 101


def test_options_checked_and_clamped():
    opts = options_from_json(throughput.Options, {"max_bytes": 10**12, "interval_ms": 1, "sni": None})
    assert sorted(clamp_options(opts)) == ["interval_ms", "max_bytes"]
    assert opts.max_bytes == 20 * 1024 * 1024 and opts.interval_ms == 20
    assert isinstance(opts.max_bytes, int)
    for bad in ({"max_bytes": "1"}, {"max_bytes": 1.5}, {"sni": 3}, {"max_bytes": True}, {"x": 1}, ["a"]):
        with pytest.raises(BadRequest):
            options_from_json(throughput.Options, bad)
    assert options_from_json(http.Options, {"timeout": 3}).timeout == 3  # ints are fine for floats
