"""Fully encrypted traffic (FET): the GFW's exemption rules and payload generators.

Wu et al., "How the Great Firewall of China Detects and Blocks Fully
Encrypted Traffic", USENIX Security 2023, s4: the censor looks only at the
first data packet of a TCP connection from client to server and *exempts* it
when any of these holds:

* Ex1: the average number of set bits per byte is <= 3.4 or >= 4.6;
* Ex2: the first 6 bytes are all printable ASCII (0x20-0x7e);
* Ex3: more than 50 % of the bytes are printable;
* Ex4: more than 20 contiguous bytes are printable;
* Ex5: the first bytes match TLS (``[\\x16-\\x17]\\x03[\\x00-\\x09]``) or an
  HTTP method (``GET ``, ``PUT ``, ``POST ``, ``HEAD ``).

A non-exempt connection is blocked with probability ~0.26 (s4.1: 26.3 %),
and the 3-tuple then stays blocked for 120 or 180 s (s4.2). These pure
functions are shared by the ``fet`` probe and the lab censor.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

#: Wu et al. 2023, s4.1: per-connection blocking probability of non-exempt traffic
BLOCK_PROBABILITY = 0.263
EX1_LOW, EX1_HIGH = 3.4, 4.6
EX4_RUN = 20
HTTP_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ")
_TLS_RE = re.compile(rb"[\x16-\x17]\x03[\x00-\x09]")
RULES = ("ex1_popcount", "ex2_first6_printable", "ex3_half_printable", "ex4_printable_run", "ex5_protocol")


def is_printable(byte: int) -> bool:
    """Printable ASCII as the paper defines it: 0x20-0x7e."""
    return 0x20 <= byte <= 0x7E


def average_popcount(payload: bytes) -> float:
    """Average set bits per byte (0.0 for an empty payload)."""
    if not payload:
        return 0.0
    return sum(b.bit_count() for b in payload) / len(payload)


def longest_printable_run(payload: bytes) -> int:
    """Length of the longest run of printable bytes."""
    best = cur = 0
    for b in payload:
        cur = cur + 1 if is_printable(b) else 0
        best = max(best, cur)
    return best


def exemptions(payload: bytes) -> list[str]:
    """Names of the exemption rules ``payload`` satisfies ([] = would be examined further)."""
    out = []
    pc = average_popcount(payload)
    if pc <= EX1_LOW or pc >= EX1_HIGH:
        out.append("ex1_popcount")
    if len(payload) >= 6 and all(is_printable(b) for b in payload[:6]):
        out.append("ex2_first6_printable")
    if payload and sum(is_printable(b) for b in payload) * 2 > len(payload):
        out.append("ex3_half_printable")
    if longest_printable_run(payload) > EX4_RUN:
        out.append("ex4_printable_run")
    if _TLS_RE.match(payload[:3]) or payload.startswith(HTTP_METHODS):
        out.append("ex5_protocol")
    return out


def is_exempt(payload: bytes) -> bool:
    """True when any exemption rule holds."""
    return bool(exemptions(payload))


def non_exempt_payload(length: int, rand: Callable[[int], bytes] = os.urandom) -> bytes:
    """Random bytes that satisfy none of the exemption rules (rejection sampling).

    ``length`` must be at least 8: shorter random payloads rarely have an
    average popcount strictly between 3.4 and 4.6.
    """
    if length < 8:
        raise ValueError("non-exempt payloads need at least 8 bytes")
    for _ in range(10000):
        p = rand(length)
        if not exemptions(p):
            return p
    raise RuntimeError("could not draw a non-exempt payload")  # pragma: no cover - probability ~0


def exempt_payload(rule: str, length: int, rand: Callable[[int], bytes] = os.urandom) -> bytes:
    """A control payload exempt by exactly the rule ``rule`` where possible.

    ``ex2_first6_printable``: 6 printable bytes then non-exempt random bytes;
    ``ex1_popcount``: bytes with 1-2 set bits; ``ex5_protocol``: a TLS
    record header then random bytes; ``ex3_half_printable``/``ex4_printable_run``:
    printable text. Only ex2 and ex5 controls differ from the test payload in
    nothing but their first bytes, which is what makes them sharp controls.
    """
    if rule == "ex2_first6_printable":
        body = non_exempt_payload(length, rand)
        head = bytes(0x41 + b % 26 for b in rand(6))
        return head + body[6:]
    if rule == "ex5_protocol":
        body = non_exempt_payload(length, rand)
        return b"\x16\x03\x01" + body[3:]
    if rule == "ex1_popcount":
        return bytes((1 << (b % 8)) | (1 << ((b >> 3) % 8)) for b in rand(length))
    if rule in ("ex3_half_printable", "ex4_printable_run"):
        return bytes(0x61 + b % 26 for b in rand(length))
    raise ValueError(f"unknown rule {rule!r}; one of {', '.join(RULES)}")


def attempts_needed(p: float = BLOCK_PROBABILITY, confidence: float = 0.99) -> int:
    """Connections needed so that a censor blocking each with probability ``p`` acts at least once.

    n = ceil(log(1 - confidence) / log(1 - p)): 16 for p = 0.263 at 99 %.
    """
    if not 0 < p < 1 or not 0 < confidence < 1:
        raise ValueError("p and confidence must be in (0, 1)")
    return math.ceil(math.log(1 - confidence) / math.log(1 - p))


def miss_probability(n: int, p: float = BLOCK_PROBABILITY) -> float:
    """Probability that n non-exempt connections are all let through: (1 - p)^n."""
    return (1 - p) ** n
