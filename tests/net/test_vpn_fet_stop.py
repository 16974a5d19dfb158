"""fet probe: the series stops once the evidence is there (so a campaign's watchdog never kills it
under residual blocking, where every further connection would wait out its timeouts)."""

from __future__ import annotations

import socket
import threading

import pytest
from vpn_support import run_probe, serving_peer

from censorscope.probes.fet import _enough
from censorscope.probes.wire import fet as rules


def test_enough_rules():
    assert _enough([("fet", True), ("control", False)]) is None
    assert _enough([("fet", True), ("control", True)]) is None
    assert _enough([("fet", False), ("control", False), ("fet", True), ("control", True), ("fet", True)]) == "residual"
    pairs = [("fet", True), ("control", False)] * 3
    assert _enough(pairs) == "singled_out"
    assert _enough(pairs[:-1]) is None  # the last failure's exempt neighbour not yet measured
    assert _enough([("fet", True), ("control", True), ("fet", False), ("control", False)] + pairs) is None


def _server(residual: bool) -> tuple[int, socket.socket]:
    """Echo server that stays silent on non-exempt first payloads; with ``residual``, silent on
    every connection after the first non-exempt one (the censor's 3-tuple blocking, emulated)."""
    tripped = threading.Event()

    def handle(c: socket.socket) -> None:
        c.settimeout(5)
        data = c.recv(65536)
        if not rules.is_exempt(data):
            tripped.set()
        if not rules.is_exempt(data) or (residual and tripped.is_set()):
            c.recv(1)  # hold the connection until the client gives up
            return
        c.sendall(data)

    return serving_peer(handle)


@pytest.mark.net
def test_stops_when_non_exempt_traffic_is_singled_out():
    port, srv = _server(residual=False)
    try:
        obs = run_probe("fet", f"127.0.0.1:{port}", attempts=10, interval=0.0, followups=1, followup_delay=0.0,
                        read_timeout=0.5)
    finally:
        srv.close()
    att = [(o["kind"], o["failure"]) for o in obs if o["operation"] == "fet_attempt"]
    assert att == [("fet", "generic_timeout_error"), ("control", None)] * 3 + [("followup", None)]
    stopped = [o for o in obs if o["operation"] == "fet_stopped"]
    assert [(s["reason"], s["attempts_made"]) for s in stopped] == [("singled_out", 6)]


@pytest.mark.net
def test_stops_under_residual_blocking_without_follow_ups():
    port, srv = _server(residual=True)
    try:
        obs = run_probe("fet", f"127.0.0.1:{port}", attempts=10, interval=0.0, followups=2, followup_delay=0.0,
                        read_timeout=0.5)
    finally:
        srv.close()
    att = [(o["kind"], o["failure"]) for o in obs if o["operation"] == "fet_attempt"]
    assert att == [("fet", "generic_timeout_error"), ("control", "generic_timeout_error"),
                   ("fet", "generic_timeout_error")]
    assert [o["reason"] for o in obs if o["operation"] == "fet_stopped"] == ["residual"]
