"""lab evaluate's probe timeouts stay above every honest slow step the shipped scenarios contain.

A timeout below one of them would turn a slow-but-fine (or down) target into a
timeout the control does not share: a false ``blocked``. The numbers here are
the lab's (see the comments at ``STEP_TIMEOUT``), not the wild's.
"""

from __future__ import annotations

from pathlib import Path

from censorscope.lab import evaluate as E
from censorscope.lab import scenario as S
from censorscope.probes import web

#: seconds an address assigned to nothing takes to answer host_unreachable (ARP: 3 probes, 1 s apart)
ARP_FAILURE = 3.1
MARGIN = 1.5  # for a loaded machine


def test_whole_measurement_timeouts_outlast_every_slow_server():
    slowest = max(S.load(n).slow_delay for n in S.shipped())
    assert E.PROBE_TIMEOUT >= slowest + MARGIN
    assert E.STEP_TIMEOUT_PROBES <= {"dns", "tcp", "tls", "web", "throughput"}  # each step, not the whole
    assert "http" not in E.STEP_TIMEOUT_PROBES and E.campaign_timeout("http") == E.PROBE_TIMEOUT
    # web's step timeout does not bound its HTTP round trip: that is http_timeout, left at its default
    assert web.Options().http_timeout >= slowest + MARGIN
    assert "http_timeout" not in E.campaign_toml("x", "web", Path("/l"), Path("/o"), "http://h")


def test_step_timeouts_outlast_an_arp_failure():
    for probe in ("dns", "tcp", "tls", "web", "throughput", "http", "openvpn"):
        assert E.campaign_timeout(probe) >= ARP_FAILURE + MARGIN
        assert f"timeout = {E.campaign_timeout(probe)}" in E.campaign_toml("x", probe, Path("/l"), Path("/o"),
                                                                           "http://h")
