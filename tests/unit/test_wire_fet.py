"""The GFW fully-encrypted-traffic exemption rules (Wu et al., USENIX Security 2023, s4): one fixture
per rule, the generators, and the repetition arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorscope.probes.wire import fet

# bytes >= 0x80 with exactly 4 set bits: average popcount 4.0 and nothing printable
NEUTRAL = bytes([0x96, 0x99, 0xA5, 0xC3, 0xA9, 0x9A]) * 10


def test_neutral_fixture_is_not_exempt():
    assert fet.average_popcount(NEUTRAL) == 4.0 and fet.exemptions(NEUTRAL) == []


def test_ex1_popcount():
    low = bytes([0x01, 0x03]) * 30  # 1.5 bits per byte
    high = bytes([0xFF, 0xFE]) * 30  # 7.5 bits per byte
    assert "ex1_popcount" in fet.exemptions(low) and "ex1_popcount" in fet.exemptions(high)
    # the thresholds are inclusive: exactly 3.4 is exempt, 3.5 is not
    at_34 = bytes([0x07] * 3 + [0x0F] * 2) * 4  # (3*3 + 2*4) / 5 = 3.4
    assert fet.average_popcount(at_34) == pytest.approx(3.4) and "ex1_popcount" in fet.exemptions(at_34)
    at_35 = bytes([0x07, 0x0F] * 10)  # 3.5
    assert "ex1_popcount" not in fet.exemptions(at_35)


def test_ex2_first_six_printable():
    p = b"ABCDEF" + NEUTRAL
    assert fet.exemptions(p) == ["ex2_first6_printable"]
    assert fet.exemptions(b"ABCDE" + NEUTRAL) == []  # five is not enough


def test_ex3_more_than_half_printable():
    assert "ex3_half_printable" not in fet.exemptions(NEUTRAL[:30] + b"U" * 30)  # exactly 50 %: not exempt
    more = bytes([0x96]) * 29 + b"U9" * 15 + b"U"
    assert "ex3_half_printable" in fet.exemptions(more)


def test_ex4_printable_run():
    run21 = NEUTRAL + b"U" * 21 + NEUTRAL
    run20 = NEUTRAL + b"U" * 20 + NEUTRAL
    assert "ex4_printable_run" in fet.exemptions(run21) and "ex4_printable_run" not in fet.exemptions(run20)


@pytest.mark.parametrize("prefix", [b"\x16\x03\x01", b"\x17\x03\x03", b"\x16\x03\x09", b"GET ", b"PUT ",
                                    b"POST ", b"HEAD "])
def test_ex5_protocol(prefix):
    assert "ex5_protocol" in fet.exemptions(prefix + NEUTRAL)


@pytest.mark.parametrize("prefix", [b"\x18\x03\x01", b"\x16\x03\x0a", b"\x16\x02\x01", b"DELETE "])
def test_ex5_negative(prefix):
    assert "ex5_protocol" not in fet.exemptions(prefix + NEUTRAL)


@settings(max_examples=200, deadline=None)
@given(st.integers(8, 1500))
def test_generated_non_exempt_satisfies_no_rule(n):
    p = fet.non_exempt_payload(n)
    assert len(p) == n and fet.exemptions(p) == []


@pytest.mark.parametrize("rule", fet.RULES)
def test_exempt_controls(rule):
    for _ in range(20):
        assert rule in fet.exemptions(fet.exempt_payload(rule, 200))
    # ex2/ex5 controls are exempt by that rule alone
    if rule in ("ex2_first6_printable", "ex5_protocol"):
        assert fet.exemptions(fet.exempt_payload(rule, 200)) == [rule]


def test_repetition_arithmetic():
    # CENSORSHIP-FACTS.md: miss probability 4.7 % at n = 10, 0.76 % at 16, 0.05 % at 25
    assert fet.attempts_needed(0.263, 0.99) == 16
    assert fet.miss_probability(10) == pytest.approx(0.047, abs=5e-4)
    assert fet.miss_probability(16) == pytest.approx(0.0076, abs=1e-4)
    assert fet.miss_probability(25) == pytest.approx(0.0005, abs=1e-4)
    with pytest.raises(ValueError):
        fet.attempts_needed(1.0)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_rules(data):
    ex = fet.exemptions(data)
    assert set(ex) <= set(fet.RULES) and fet.is_exempt(data) == bool(ex)
