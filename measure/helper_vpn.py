"""What the control helper takes from a request for the VPN and circumvention probes.

The website probes' options are plain values the helper can clamp. The VPN
probes' options also name **files** (every probe's ``config``: an ``.ovpn``
file with tls-auth/tls-crypt keys, a wg-quick file, a Shadowsocks TOML),
**programs** (tor's ``obfs4proxy``) and **secrets** (WireGuard private and
preshared keys, SOCKS passwords, bridge lines). A remote caller must never
choose a file the helper reads or a program it runs, and a control has no use
for a vantage's secrets. So for these probes the helper takes an
**allow-list** per probe, and a request naming any other option, or any
other target query parameter (``?config=`` names a file), is refused with
400 whatever its value:

* plain values checked by form: ``proto``, ``pubkey`` (a public key is not a
  secret), ``fingerprint``, ``sni``, ``dest``, ``control_rule``, ``group``;
* numbers within bounds: below ``low`` is refused, above ``cap`` is lowered
  to the cap and reported in ``clamped_options`` (as the website probes'
  timeouts are), under ``floor`` is raised to it;
* repetition counts (``fet``: attempts, follow-ups) capped, and the fet run
  cut to a number of attempts whose *worst case* (every connection waiting
  out its timeouts) fits the helper's time budget, so one request can make
  a bounded number of connections in a bounded time.

``vpn_control_options`` is the client's half: which of a vantage's options
are sent, and why a control is impossible when the vantage used something
the helper never takes (a control without the tls-auth key or the client's
WireGuard key would not be the same measurement).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from censorscope.probes import fet as fet_probe
from censorscope.probes.net import split_host_port
from censorscope.probes.wire import fet as fet_rules


@dataclass(frozen=True)
class Number:
    """A numeric option: refused below ``low``, raised to ``floor``, lowered to ``cap``."""

    low: float
    cap: float
    floor: float | None = None


@dataclass(frozen=True)
class Text:
    """A string option (or target parameter) that must match ``pattern`` in full."""

    pattern: str
    what: str


@dataclass(frozen=True)
class Choice:
    """A whole-number option with a fixed set of values."""

    values: tuple[int, ...]


@dataclass(frozen=True)
class Flag:
    """A boolean option."""


Rule = Number | Text | Choice | Flag

_TIMEOUT = Number(0.0, 10.0)
_HOLD = Number(0.0, 2.0)
_PROTO = Text(r"udp|tcp", "udp or tcp")
_PUBKEY = Text(r"[A-Za-z0-9+/]{43}=", "a base64 WireGuard public key (44 characters)")
_FINGERPRINT = Text(r"[0-9A-Fa-f]{40}", "40 hex digits")
_SNI = Text(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", "a host name")
_DEST = Text(r"(?=.{1,300}$)(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", "HOST:PORT")

#: Options a request may set, per probe. Anything else is refused (400).
OPTIONS: dict[str, dict[str, Rule]] = {
    "openvpn": {"proto": _PROTO, "timeout": _TIMEOUT, "hold": _HOLD},
    "wireguard": {"pubkey": _PUBKEY, "timeout": _TIMEOUT, "retransmit": Number(0, 10)},
    "ikev2": {"group": Choice((14, 19, 31)), "nat_t": Flag(), "timeout": _TIMEOUT},
    "pptp": {"timeout": _TIMEOUT},
    "l2tp": {"timeout": _TIMEOUT, "hold": _HOLD},
    "sstp": {"sni": _SNI, "timeout": _TIMEOUT},
    "ssh": {"timeout": _TIMEOUT},
    "tor": {"fingerprint": _FINGERPRINT, "dirport": Number(0, 65535), "timeout": _TIMEOUT},
    "fet": {
        # 20 attempts: 16 give 99 % against p = 0.263 (Wu et al., USENIX Security 2023), 20 give 99.8 %
        "attempts": Number(0, 20),
        "probability": Number(0.01, 0.99), "confidence": Number(0.01, 0.999),
        "payload_length": Number(8, 1024),
        "control_rule": Text("|".join(fet_rules.RULES), "one of " + ", ".join(fet_rules.RULES)),
        # from an uncensored host a live server answers in well under a second: short waits keep
        # the worst case (a dead or silent server) within the budget with several attempts
        "read_timeout": Number(0.0, 2.0), "interval": Number(0.0, 1.0, floor=0.05),
        "followups": Number(0, 4), "followup_delay": Number(0.0, 10.0),
        "timeout": Number(0.0, 3.0),
    },
    "socks": {"dest": _DEST, "timeout": _TIMEOUT},
    "httpconnect": {"dest": _DEST, "timeout": _TIMEOUT},
}

#: Target query parameters a request may carry, per probe (``?config=`` never).
PARAMS: dict[str, dict[str, Text]] = {
    "openvpn": {"proto": _PROTO},
    "wireguard": {"pubkey": _PUBKEY},
    "ikev2": {"nat_t": Text(r"[01]", "0 or 1")},
    "sstp": {"sni": _SNI},
    "tor": {"fp": _FINGERPRINT},
    "socks": {"dest": _DEST},
    "httpconnect": {"dest": _DEST},
}

#: The VPN probes the helper offers, in registry order.
VPN_PROBES: tuple[str, ...] = tuple(OPTIONS)

#: Share of the helper's wall-clock limit a fet run may take in its worst case.
FET_BUDGET_SHARE = 0.9

_NEVER = "a helper never takes file paths, programs or secrets"


def target_params(target: str) -> dict[str, str]:
    """The query parameters of a URL-form target (``{}`` for ``IP:PORT``)."""
    if "://" not in target:
        return {}
    out: dict[str, str] = {}
    for pair in urlsplit(target.strip()).query.split("&"):
        if pair:
            k, _, v = pair.partition("=")
            out[unquote(k)] = unquote(v)
    return out


def check_request(probe: str, target: str, values: Any) -> None:
    """Refuse (``ValueError``, a 400) options or target parameters outside ``probe``'s allow-list.

    Values are checked by form here; JSON types and numbers' bounds by
    ``options_from_json`` and ``apply_caps``.
    """
    allowed = OPTIONS[probe]
    if values is not None and isinstance(values, dict):
        extra = sorted(set(values) - set(allowed))
        if extra:
            raise ValueError(f"option(s) {', '.join(extra)} not accepted for {probe} ({_NEVER}); "
                             f"allowed: {', '.join(sorted(allowed))}")
        for name, value in values.items():
            rule = allowed[name]
            if isinstance(rule, Text) and isinstance(value, str):
                _check_text(f"option {name!r}", rule, value)
            if isinstance(rule, Choice) and value not in rule.values:
                raise ValueError(f"option {name!r} must be one of {', '.join(map(str, rule.values))}")
            if isinstance(rule, Number) and isinstance(value, int | float) and not isinstance(value, bool):
                if not math.isfinite(value) or value < rule.low:
                    raise ValueError(f"option {name!r} must be at least {rule.low:g}")
    params = PARAMS.get(probe, {})
    for key, value in target_params(target).items():
        if key not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ValueError(f"target parameter {key!r} not accepted for {probe} ({_NEVER}); allowed: {known}")
        _check_text(f"target parameter {key!r}", params[key], value)


def _check_text(where: str, rule: Text, value: str) -> None:
    if re.fullmatch(rule.pattern, value) is None:
        raise ValueError(f"{where} must be {rule.what}")


def apply_caps(probe: str, options: Any, max_runtime: float, target: str = "") -> list[str]:
    """Lower (or raise) ``options`` in place to ``probe``'s bounds; return the names changed.

    For ``fet``, ``attempts`` is also made explicit and cut so that the run's
    worst case fits ``FET_BUDGET_SHARE`` of ``max_runtime``; for the other
    probes that declare a ``worst_case``, ``timeout`` is lowered until it
    fits that share (a control cut off by the run limit says nothing, e.g.
    tor with a dir port against a dead relay).
    """
    changed = []
    for name, rule in OPTIONS[probe].items():
        if not isinstance(rule, Number):
            continue
        value = getattr(options, name)
        new = min(value, rule.cap)
        if rule.floor is not None:
            new = max(new, rule.floor)
        if new != value:
            # a JSON integer for a float option (``"interval": 0``) must not round a fractional floor
            # back down: int(0.05) is 0, and the floor would be reported applied but not hold
            whole = isinstance(value, int) and float(new).is_integer()
            setattr(options, name, int(new) if whole else float(new))
            changed.append(name)
    if probe == "fet":
        changed += [n for n in _fit_fet(options, FET_BUDGET_SHARE * max_runtime) if n not in changed]
    elif _fit_timeout(probe, target, options, FET_BUDGET_SHARE * max_runtime) and "timeout" not in changed:
        changed.append("timeout")
    return changed


#: the lowest timeout ``_fit_timeout`` goes to before refusing
MIN_FITTED_TIMEOUT = 1.0


def _fit_timeout(probe: str, target: str, options: Any, budget: float) -> bool:
    """Lower ``options.timeout`` until the probe's worst case fits ``budget``; True if it changed."""
    from censorscope.probes import registry

    worst_case = getattr(registry.load(probe), "worst_case", None)
    if worst_case is None or "timeout" not in OPTIONS[probe]:
        return False
    before = options.timeout
    while worst_case(target, options) > budget and options.timeout > MIN_FITTED_TIMEOUT:
        options.timeout = max(MIN_FITTED_TIMEOUT, round(float(options.timeout) * 0.9, 3))
    if worst_case(target, options) > budget:
        raise ValueError(f"{probe}: even with a {options.timeout:g} s timeout a run may take "
                         f"{worst_case(target, options):.0f} s, over the helper's budget of {budget:.0f} s")
    return options.timeout != before


def fet_worst_case(options: Any, attempts: int) -> float:
    """Seconds a fet run with ``attempts`` takes if every connection waits out its timeouts and its
    close: the probe's own bound (``probes.fet.worst_case``; the helper never takes a config file)."""
    return fet_probe.worst_case("", dataclasses.replace(options, attempts=attempts, config=None))


def _fit_fet(options: Any, budget: float) -> list[str]:
    try:
        planned = fet_rules.attempts_needed(float(options.probability), float(options.confidence))
    except ValueError as e:
        raise ValueError(f"fet: {e}") from None
    want = int(options.attempts) or planned
    fits = min(want, int(OPTIONS["fet"]["attempts"].cap))  # type: ignore[union-attr]
    while fits > 1 and fet_worst_case(options, fits) > budget:
        fits -= 1
    if fet_worst_case(options, fits) > budget:
        raise ValueError(f"fet: even one attempt may take {fet_worst_case(options, fits):.0f} s, over the "
                         f"helper's budget of {budget:.0f} s (lower followups or followup_delay)")
    options.attempts = fits  # explicit, so the fet_plan shows the cut beside attempts_needed
    return ["attempts"] if fits < want else []


def extra_destinations(probe: str, target: str, options: Any) -> list[str]:
    """Hosts a VPN probe contacts besides its target's: a proxy probe's ``dest`` (through the proxy)."""
    if probe not in ("socks", "httpconnect"):
        return []
    dest = target_params(target).get("dest") or getattr(options, "dest", None)
    if not dest:
        return []
    try:
        return [split_host_port(str(dest))[0]]
    except ValueError:
        return []


def vpn_control_options(probe: str, target: str, options: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The options a client sends for a VPN probe's control, or (None, why a control is impossible).

    Allowed fields are sent; other fields are dropped when they hold their
    default, and make the control impossible when the vantage set them (the
    helper would measure something else).
    """
    params = PARAMS.get(probe, {})
    odd = sorted(k for k in target_params(target) if k not in params)
    if odd:
        return None, f"target parameter(s) {', '.join(odd)} ({_NEVER})"
    if options is None:
        return {}, None
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    defaults = _defaults(type(options)) if dataclasses.is_dataclass(options) else {}
    allowed = OPTIONS[probe]
    sent = {k: v for k, v in values.items() if k in allowed}
    used = sorted(k for k, v in values.items() if k not in allowed and (k not in defaults or v != defaults[k]))
    if used:
        return None, f"option(s) {', '.join(used)} ({_NEVER})"
    return sent, None


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out
