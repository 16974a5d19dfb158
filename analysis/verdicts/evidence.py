"""Short human phrases that name observations in verdict evidence.

Evidence must let a reader find the observations that show a verdict: each
phrase names the observation id, the operation and the values that matter,
e.g. ``tls_handshake #3 to 203.0.113.80:443 (SNI blocked.example) failed
connection_reset after 0.012 s``.
"""

from __future__ import annotations

from typing import Any

from censorscope.analysis.verdicts.core import address_of


def _secs(o: dict[str, Any]) -> str:
    try:
        return f"{float(o['t']) - float(o['t0']):.3f} s"
    except (KeyError, TypeError, ValueError):
        return "?"


def name(o: dict[str, Any], *, control: bool = False) -> str:
    """``[control ]<operation> #<id>[ to <address>][ (SNI x)]``."""
    op = o.get("operation")
    text = f"control {op} #{o.get('id')}" if control else f"{op} #{o.get('id')}"
    if op == "dns_query":
        text += " " + f"for {o.get('query_name')} {o.get('query_type') or ''}".rstrip()
        resolver = o.get("resolver")
        if resolver:
            text += f" to {resolver}"
    else:
        target = address_of(o) or o.get("url") or o.get("resolver")
        if target:
            text += f" to {target}"
    if (op == "tls_handshake" or op == "quic_handshake") and "server_name" in o:
        text += f" (SNI {o.get('server_name') or 'none'})"
    return text


def outcome(o: dict[str, Any], *, control: bool = False) -> str:
    """``<name> failed <failure> after <s>`` or ``<name> succeeded``."""
    if o.get("failure"):
        return f"{name(o, control=control)} failed {o['failure']} after {_secs(o)}"
    return f"{name(o, control=control)} succeeded"


def addresses(addrs: list[str], limit: int = 4) -> str:
    """A short list of addresses."""
    if not addrs:
        return "no addresses"
    shown = ", ".join(addrs[:limit])
    return shown + (f" (+{len(addrs) - limit} more)" if len(addrs) > limit else "")


def sentence(*parts: str) -> str:
    """Join phrases into one sentence ending with a full stop."""
    text = "; ".join([p.strip().rstrip(".") for p in parts if p and p.strip()])
    return text + "." if text else ""
