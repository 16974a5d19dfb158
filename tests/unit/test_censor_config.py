"""Censor configuration validation, the behaviour registry and the generated iptables rules."""

from __future__ import annotations

import dataclasses

import pytest

from censorscope.lab.censor.behaviours.base import Behaviour, Rule
from censorscope.lab.censor.config import ConfigError, load_config
from censorscope.lab.censor.registry import BEHAVIOURS
from censorscope.lab.censor.rules import ruleset


def test_full_config_loads():
    cfg = load_config({
        "behaviours": [
            {"behaviour": "dns_injection", "names": ["blocked.example"], "injectors": [{"ttl": "copy"}, {"ttl": 30}]},
            {"behaviour": "rst_injection", "http_keywords": ["falun"], "probability": 0.75, "ttl": "copy"},
            {"behaviour": "residual", "duration": 2},
        ],
        "interfaces": {"client_side": "a0", "server_side": "b0"},
        "log": "/tmp/x.jsonl",
        "seed": 3,
    })
    assert [b.name for b in cfg.behaviours] == ["dns_injection", "rst_injection", "residual"]
    assert cfg.behaviours[0].params.injectors[0].ttl == "copy"
    assert cfg.behaviours[1].params.probability == 0.75
    assert cfg.behaviours[2].params.duration == 2.0  # ints accepted for floats
    assert (cfg.client_side, cfg.server_side, cfg.seed) == ("a0", "b0", 3)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"behaviours": [{"behaviour": "nope"}]}, "unknown behaviour 'nope'"),
        ({"behaviours": [{"behaviour": "ip_blackhole", "addresses": ["203.0.113.2"], "speed": 1}]},
         "unknown parameter(s) speed"),
        ({"behaviours": [{"behaviour": "ip_blackhole"}]}, "missing required parameter 'addresses'"),
        ({"behaviours": [{"behaviour": "ip_blackhole", "addresses": "203.0.113.2"}]}, "expected a list"),
        ({"behaviours": [{"behaviour": "ip_blackhole", "addresses": ["203.0.113.2"], "mode": "some"}]},
         "expected one of"),
        ({"behaviours": [{"behaviour": "rst_injection", "sni": ["a"], "probability": 1.5}]}, "outside [0, 1]"),
        ({"behaviours": [{"behaviour": "rst_injection"}]}, "at least one of"),
        ({"behaviours": [{"behaviour": "rst_injection", "sni": ["a"], "reassemble": "yes"}]}, "true/false"),
        ({"behaviours": [{"behaviour": "rst_injection", "sni": ["a"], "ttl": 300}]}, "ttl 300"),
        ({"behaviours": [{"behaviour": "dns_injection", "names": ["a"], "pool_v4": ["8.8.8.8"]}]},
         "not a lab address"),
        ({"behaviours": [{"behaviour": "dns_injection", "names": ["a"], "injectors": [{}, {}, {}, {}]}]},
         "between 1 and 3"),
        ({"behaviours": [{"behaviour": "dns_injection", "names": ["a"], "injectors": [{"colour": 1}]}]},
         "unknown parameter(s) colour"),
        ({"behaviours": [{"behaviour": "throttle", "sni": ["a"], "rate": "fast"}]}, "not a tc rate"),
        ({"behaviours": [{"behaviour": "latency", "delay_ms": 0}]}, "delay_ms"),
        ({"behaviours": [{"behaviour": "ip_blackhole", "addresses": ["not-an-ip"]}]}, "does not appear"),
        ({"behaviours": [{"names": ["a"]}]}, "'behaviour' name is required"),
        ({"behaviours": [], "colour": 1}, "unknown top-level key(s) colour"),
        ({"behaviours": [], "interfaces": {"inside": "x"}}, "interfaces"),
        ({"behaviours": [], "seed": "x"}, "seed"),
    ],
)
def test_invalid_configs_name_the_problem(raw, message):
    with pytest.raises(ConfigError) as exc:
        load_config(raw)
    assert message in str(exc.value)


def test_error_names_behaviour_and_position():
    with pytest.raises(ConfigError, match=r"behaviours\[1\] residual.*duration"):
        load_config({"behaviours": [{"behaviour": "residual"}, {"behaviour": "residual", "duration": "long"}]})


def test_registry_entries_follow_the_contract():
    assert set(BEHAVIOURS) >= {"dns_injection", "ip_blackhole", "icmp_reject", "rst_injection", "residual",
                               "blockpage_injection", "tls_interception", "throttle", "latency"}
    for name, cls in BEHAVIOURS.items():
        assert issubclass(cls, Behaviour) and cls.name == name
        assert dataclasses.is_dataclass(cls.Params) and cls.__doc__ and cls.Params.__doc__


def test_ruleset_deduplicates_and_splits_families():
    queue = [
        Rule("filter", ("-p", "udp", "--dport", "53")),
        Rule("filter", ("-p", "udp", "--dport", "53")),
        Rule("filter", ("-d", "203.0.113.2"), 4),
        Rule("filter", ("-d", "2001:db8:3::2"), 6),
    ]
    kernel = [Rule("nat", ("-p", "tcp", "-d", "203.0.113.2", "-j", "REDIRECT", "--to-ports", "14400"), 4)]
    rs = ruleset(queue, kernel, 5)
    assert [r.args for r in rs[4]] == [
        ("-p", "udp", "--dport", "53", "-j", "NFQUEUE", "--queue-num", "5"),
        ("-d", "203.0.113.2", "-j", "NFQUEUE", "--queue-num", "5"),
        ("-p", "tcp", "-d", "203.0.113.2", "-j", "REDIRECT", "--to-ports", "14400"),
    ]
    assert [r.args[:2] for r in rs[6]] == [("-p", "udp"), ("-d", "2001:db8:3::2")]
    assert not any("--queue-bypass" in r.args for fam in rs.values() for r in fam)


def test_restore_text_declares_own_chains():
    from censorscope.lab.censor.rules import restore_text

    text = restore_text([Rule("filter", ("-p", "udp", "-j", "NFQUEUE")), Rule("mangle", ("-j", "CLASSIFY"))])
    assert text.count(":CENSORSCOPE - [0:0]") == 3 and text.count("COMMIT") == 3
    assert "-A CENSORSCOPE -p udp -j NFQUEUE" in text and "-A CENSORSCOPE -j CLASSIFY" in text


def test_every_behaviour_builds_rules_from_a_minimal_config():
    from pathlib import Path

    from censorscope.lab.censor.engine import build_behaviours

    minimal = {  # behaviours whose parameters all have defaults need no entry
        "dns_injection": {"names": ["a.example"]},
        "ip_blackhole": {"addresses": ["203.0.113.2"]},
        "icmp_reject": {"addresses": ["203.0.113.2"]},
        "rst_injection": {"sni": ["a.example"]},
        "blockpage_injection": {"http_hosts": ["a.example"]},
        "tls_interception": {"sni": ["a.example"], "addresses": ["203.0.113.2"]},
        "throttle": {"sni": ["a.example"]},
        "latency": {"delay_ms": 5},
        "quic_sni": {"sni": ["a.example"]},
        "port_block": {"protocols": ["ikev2"]},
    }
    for name in BEHAVIOURS:
        try:
            cfg = load_config({"behaviours": [{"behaviour": name, **minimal.get(name, {})}]})
        except ConfigError as e:
            raise AssertionError(f"add {name}'s minimal parameters to this test: {e}") from None
        for b in build_behaviours(cfg, state_dir=Path("/nonexistent"), log=lambda *a: None):
            for r in b.queue_rules() + b.kernel_rules():
                assert r.table in ("filter", "nat", "mangle") and r.family in (None, 4, 6)
                assert all(isinstance(a, str) for a in r.args), (name, r.args)
