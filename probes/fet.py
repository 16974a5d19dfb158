"""``fet``: fully-encrypted-traffic probing (Wu et al., USENIX Security 2023) and a Shadowsocks client.

The GFW blocks a TCP connection whose first client payload looks random
(matches none of the exemption rules in ``censorscope.probes.wire.fet``)
with probability ~0.26, then drops the 3-tuple for 120-180 s. One connection
therefore says little; this probe makes ``attempts`` connections with
non-exempt payloads, interleaved with *control* connections whose payload
differs only in being exempt (by default: the first 6 bytes printable, rule
Ex2), all to the same server and port. ``attempts`` defaults to the number
needed so that a censor with the given per-connection probability acts at
least once with the given confidence (``fet_plan`` records the computation).
After ``followup_delay`` seconds it makes ``followups`` more control
connections, which reveal residual blocking of the 3-tuple (use 120-180 s
delays to see it expire, as in the wild).

Each connection is one ``connect`` plus one ``fet_attempt`` (kind
``fet``/``control``/``followup``): the payload's exemption analysis and what
came back (data, EOF, reset, timeout). The server should answer every first
payload (an echo server is ideal); otherwise compare fet vs control outcomes.

With a Shadowsocks server config (``ss_password``, ``ss_method``,
``ss_dest``: TOML), the probe also performs a real AEAD Shadowsocks request
through the server and records ``shadowsocks_round_trip``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from censorscope.probes.errors import ConfigError
from censorscope.probes.failures import classify
from censorscope.probes.net import Net, split_host_port
from censorscope.probes.observation import Observation, Recorder
from censorscope.probes.vpn_common import (
    CLOSE_WAIT,
    Target,
    close_writer,
    config_or_empty,
    new_recorder,
    protocol_failure,
    target_and_config,
    tcp_connect,
    url_targets,
)
from censorscope.probes.wire import fet as rules
from censorscope.probes.wire import shadowsocks as ss

NAME = "fet"
VERSION = "0.1.0"
SUMMARY = "Fully-encrypted-traffic probing (GFW exemption rules) with controls; optional Shadowsocks client."
TARGET_HELP = "fet://IP:PORT"


@dataclass
class Options:
    """Options of the fet probe."""

    attempts: int = field(default=0, metadata={"help": "Non-exempt connections (0: computed from p and confidence)."})
    probability: float = field(default=rules.BLOCK_PROBABILITY,
                               metadata={"help": "Assumed per-connection blocking probability (Wu et al. 2023)."})
    confidence: float = field(default=0.99, metadata={"help": "Wanted probability that such a censor acts at least once."})
    payload_length: int = field(default=200, metadata={"help": "Bytes of each first payload."})
    control_rule: str = field(default="ex2_first6_printable", metadata={"help": "Exemption rule of the controls.",
                                                                         "choices": list(rules.RULES)})
    read_timeout: float = field(default=3.0, metadata={"help": "Seconds to wait for the server's answer."})
    interval: float = field(default=0.2, metadata={"help": "Seconds between connections."})
    followups: int = field(default=2, metadata={"help": "Control connections after the delay (residual blocking)."})
    followup_delay: float = field(default=1.0, metadata={"help": "Seconds before the follow-ups (120-180 in the wild)."})
    timeout: float = field(default=5.0, metadata={"help": "Seconds for each TCP connect."})
    shadowsocks_only: bool = field(default=False, metadata={"help": "Only the Shadowsocks round trip (needs the config)."})
    config: str | None = field(default=None, metadata={"help": "TOML: any option above, and ss_password, ss_method, ss_dest."})


async def _attempt(rec: Recorder, net: Net, t: Target, index: int, kind: str, payload: bytes,
                   timeout: float, read_timeout: float) -> None:
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return
    step = rec.begin(
        "fet_attempt", conn.id, address=t.address, attempt=index, kind=kind, payload_length=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(), payload_head=payload[:16].hex(),
        average_popcount=round(rules.average_popcount(payload), 4), exemptions=rules.exemptions(payload),
    )
    try:
        writer.write(payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), read_timeout)
        if data:
            step.ok(outcome="data", bytes_received=len(data))
        else:
            step.fail("eof_error", outcome="eof", bytes_received=0)
    except Exception as exc:  # noqa: BLE001 - every failure is data
        failure = classify(exc)
        step.fail(failure, outcome=failure, bytes_received=0)
    finally:
        await close_writer(writer)


async def _shadowsocks(rec: Recorder, net: Net, t: Target, cfg: dict, timeout: float) -> None:
    method = str(cfg.get("ss_method", "chacha20-ietf-poly1305"))
    if method not in ss.METHODS:
        raise ConfigError(f"unsupported ss_method {method!r}; one of {', '.join(ss.METHODS)}")
    try:
        dhost, dport = split_host_port(str(cfg.get("ss_dest", "")))
    except ValueError as exc:
        raise ConfigError(f"ss_dest must be HOST:PORT: {exc}") from None
    request = str(cfg.get("ss_request", f"GET / HTTP/1.0\r\nHost: {dhost}\r\n\r\n")).encode()
    reader, writer, conn = await tcp_connect(rec, net, t, timeout)
    if reader is None or writer is None:
        return
    enc = ss.Encryptor(method, str(cfg["ss_password"]))
    dec = ss.Decryptor(method, str(cfg["ss_password"]))
    first = enc.encrypt(ss.first_plaintext(dhost, dport, request))
    step = rec.begin("shadowsocks_round_trip", conn.id, address=t.address, method=method,
                     destination=f"{dhost}:{dport}", bytes_sent=len(first),
                     first_packet_exemptions=rules.exemptions(first))
    received = 0
    plain = b""
    try:
        writer.write(first)
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            received += len(chunk)
            plain += b"".join(dec.feed(chunk))
            if len(plain) > 65536:
                break
        fields = dict(bytes_received=received, response_length=len(plain),
                      response_head=plain[:256].decode("utf-8", "replace"))
        if plain:
            step.ok(**fields)
        else:
            step.fail("eof_error", **fields)
    except ss.ShadowsocksWireError as exc:
        step.fail(protocol_failure(str(exc)), bytes_received=received)
    except Exception as exc:  # noqa: BLE001
        step.fail(exc, bytes_received=received, response_length=len(plain),
                  response_head=plain[:256].decode("utf-8", "replace"))
    finally:
        await close_writer(writer)


#: consecutive failed attempts (any payload) that show the 3-tuple blocked whatever it carries
STOP_RESIDUAL = 3
#: failed non-exempt attempts, with every exempt one answered, that show random-looking traffic singled out
STOP_SINGLED_OUT = 3


def _enough(outcomes: list[tuple[str, bool]]) -> str | None:
    """Why the series can stop now, or None. Each further attempt would only wait out its timeouts
    (a campaign's watchdog kills a probe long before 32 timed-out connections), and the evidence
    is there: ``residual`` (the last :data:`STOP_RESIDUAL` attempts, exempt ones among them, all
    failed: no follow-ups either, they would fail the same way) or ``singled_out``
    (:data:`STOP_SINGLED_OUT` non-exempt failures while every exempt attempt got its answer; only
    once the pair's exempt attempt was made, so the last failure has its exempt neighbour)."""
    tail = outcomes[-STOP_RESIDUAL:]
    if len(tail) == STOP_RESIDUAL and all(failed for _, failed in tail):
        return "residual"
    if (outcomes[-1][0] != "fet" and sum(1 for kind, failed in outcomes if kind == "fet" and failed) >= STOP_SINGLED_OUT
            and not any(failed for kind, failed in outcomes if kind != "fet")):
        return "singled_out"
    return None


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """fet/control connections, follow-ups, optional Shadowsocks round trip."""
    t, cfg = target_and_config(target, "fet", None, options.config)
    opt = {k: cfg.get(k, getattr(options, k)) for k in Options.__dataclass_fields__ if k != "config"}
    p, conf = float(opt["probability"]), float(opt["confidence"])
    try:
        planned = rules.attempts_needed(p, conf)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    n = int(opt["attempts"]) or planned
    length = int(opt["payload_length"])
    if length < 8:
        raise ConfigError("payload_length must be at least 8")
    rec = new_recorder(net)
    if opt["shadowsocks_only"]:
        if not cfg.get("ss_password"):
            raise ConfigError("shadowsocks_only needs ss_password and ss_dest in the config")
        await _shadowsocks(rec, net, t, cfg, float(opt["timeout"]))
        return rec.observations
    rec.add("fet_plan", rec.now(), probability=p, confidence=conf, attempts_needed=planned, attempts=n,
            miss_probability=rules.miss_probability(n, p), control_rule=opt["control_rule"],
            followups=int(opt["followups"]), followup_delay=float(opt["followup_delay"]))
    timeout, read_timeout, interval = float(opt["timeout"]), float(opt["read_timeout"]), float(opt["interval"])
    index = 0
    outcomes: list[tuple[str, bool]] = []  # (kind, failed) of every attempt so far
    stop = None
    for i in range(n):
        if i:
            await asyncio.sleep(interval)
        for kind in ("fet", "control"):
            payload = (rules.non_exempt_payload(length) if kind == "fet"
                       else rules.exempt_payload(str(opt["control_rule"]), length))
            before = len(rec.observations)
            await _attempt(rec, net, t, index, kind, payload, timeout, read_timeout)
            outcomes.append((kind, any(o.failure for o in rec.observations[before:])))
            index += 1
            stop = _enough(outcomes)
            if stop == "residual":
                break
        if stop:
            rec.add("fet_stopped", rec.now(), reason=stop, attempts_made=index)
            break
    if int(opt["followups"]) and stop != "residual":
        await asyncio.sleep(float(opt["followup_delay"]))
        for _ in range(int(opt["followups"])):
            await _attempt(rec, net, t, index, "followup", rules.exempt_payload(str(opt["control_rule"]), length),
                           timeout, read_timeout)
            index += 1
            await asyncio.sleep(interval)
    if cfg.get("ss_password"):
        await _shadowsocks(rec, net, t, cfg, timeout)
    return rec.observations


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog.

    Every connection waits out its connect (``timeout``) or its answer
    (``read_timeout``) and the close; no early stop (a series whose failures
    alternate never stops); the intervals, the follow-up delay and the
    follow-ups; the Shadowsocks round trip as connect plus two silent reads
    (a server trickling its answer in chunks just under ``timeout`` can hold
    it longer: that is what the watchdog is for).
    """
    cfg = config_or_empty(target, options.config)
    opt = {k: cfg.get(k, getattr(options, k)) for k in Options.__dataclass_fields__ if k != "config"}
    timeout, read_timeout, interval = float(opt["timeout"]), float(opt["read_timeout"]), float(opt["interval"])
    shadowsocks = 3 * timeout + CLOSE_WAIT if cfg.get("ss_password") else 0.0
    if opt["shadowsocks_only"]:
        return shadowsocks
    try:
        n = int(opt["attempts"]) or rules.attempts_needed(float(opt["probability"]), float(opt["confidence"]))
    except ValueError:
        return 0.0  # measure refuses these options
    connection = timeout + read_timeout + CLOSE_WAIT
    total = 2 * n * connection + max(0, n - 1) * interval
    followups = int(opt["followups"])
    if followups:
        total += float(opt["followup_delay"]) + followups * (connection + interval)
    return total + shadowsocks


target_from_url = url_targets(NAME)
