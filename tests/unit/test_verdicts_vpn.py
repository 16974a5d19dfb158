"""VPN sub-methods (port / fingerprint / port_or_fingerprint / fet / residual) and residual keys with transport."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from censorscope.analysis.verdicts import verdict_for
from censorscope.analysis.verdicts.engine import judge_batch

_ids = itertools.count()
BASE = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)
SRV = "203.0.113.40"


def meas(probe, inp, obs, ctl, *, start=0.0, run="r1"):
    return {
        "measurement_id": f"v{next(_ids)}", "campaign": "t", "run_id": run, "probe": probe, "probe_version": "1",
        "input": inp, "repetition": 0, "attempt": 0,
        "measurement_start_time": (BASE + dt.timedelta(seconds=start)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "runtime": 1.0, "vantage": {"cc": "ZZ", "asn": "AS64500", "network": "lab"},
        "software": {"name": "censorscope", "version": "0"}, "observations": obs,
        "control": {"observations": ctl, "failure": None}, "annotations": {},
    }


def ob(op, id, failure=None, parent=None, t0=0.0, **fields):
    return {"id": id, "operation": op, "parent_id": parent, "t0": t0, "t": t0 + 0.05, "failure": failure, **fields}


def conn(id, port, proto, failure=None, ip=SRV):
    return ob("connect", id, failure, address=f"{ip}:{port}", ip=ip, port=port, proto=proto)


def vpn(probe, op, port, proto, *, conn_failure=None, hs_failure=None, ctl_hs_failure=None, **fields):
    """A VPN measurement: connect + one handshake operation; the control connects and answers."""
    obs = [conn(1, port, proto, conn_failure)]
    if conn_failure is None:
        obs.append(ob(op, 2, hs_failure, 1, t0=0.01, address=f"{SRV}:{port}", **fields))
    ctl = [conn(1, port, proto), ob(op, 2, ctl_hs_failure, 1, address=f"{SRV}:{port}")]
    return obs, ctl


@pytest.mark.parametrize("failure", ["generic_timeout_error", "connection_reset", "connection_refused"])
def test_tcp_connect_failure_is_port(failure):
    obs, ctl = vpn("pptp", "pptp_control", 1723, "tcp", conn_failure=failure)
    v = verdict_for(meas("pptp", f"pptp://{SRV}", obs, ctl))
    assert (v.verdict, v.method) == ("blocked", "vpn.pptp.blocked.port")
    assert "before any pptp byte was sent" in v.evidence and "stage: connect_" in v.evidence


@pytest.mark.parametrize("failure", ["host_unreachable", "connection_refused", "generic_timeout_error"])
def test_udp_socket_connect_failure_is_not_blocking(failure):
    # a UDP socket's connect sends nothing: it fails only on the vantage's own routing
    obs, ctl = vpn("wireguard", "wireguard_handshake", 51820, "udp", conn_failure=failure)
    v = verdict_for(meas("wireguard", f"wireguard://{SRV}:51820", obs, ctl))
    assert v.verdict == "inconclusive" and "sends no packet" in v.evidence


@pytest.mark.parametrize("failure,stage", [("generic_timeout_error", "handshake_drop"),
                                           ("connection_reset", "handshake_reset")])
def test_tcp_connected_then_handshake_fails_is_fingerprint(failure, stage):
    obs, ctl = vpn("openvpn", "openvpn_handshake", 1195, "tcp", hs_failure=failure, proto_note="x")
    v = verdict_for(meas("openvpn", f"openvpn://{SRV}:1195?proto=tcp", obs, ctl))
    assert (v.verdict, v.method) == ("blocked", "vpn.openvpn.blocked.fingerprint")
    assert "the port is reachable" in v.evidence and f"stage: {stage}" in v.evidence


def test_udp_handshake_drop_alone_cannot_tell_port_from_fingerprint():
    obs, ctl = vpn("l2tp", "l2tp_sccrq", 1701, "udp", hs_failure="generic_timeout_error")
    v = verdict_for(meas("l2tp", f"l2tp://{SRV}", obs, ctl))
    assert (v.verdict, v.method) == ("blocked", "vpn.l2tp.blocked.port_or_fingerprint")
    assert "look the same" in v.evidence


def test_udp_drop_with_the_protocol_answered_on_another_port_is_port():
    obs, ctl = vpn("ikev2", "ikev2_sa_init", 500, "udp", hs_failure="generic_timeout_error")
    blocked500 = meas("ikev2", f"ikev2://{SRV}", obs, ctl, start=0.0)
    obs4500, ctl4500 = vpn("ikev2", "ikev2_sa_init", 4500, "udp", result="SA")
    ok4500 = meas("ikev2", f"ikev2://{SRV}:4500", obs4500, ctl4500, start=8.0)
    v = verdict_for(blocked500, [ok4500])
    assert (v.verdict, v.method) == ("blocked", "vpn.ikev2.blocked.port")
    assert ok4500["measurement_id"] in v.evidence and "non-ESP marker" in v.evidence
    assert verdict_for(ok4500, [blocked500]).verdict == "ok"
    # another vantage's (run's) success, or one on the same port, is no evidence
    other_run = meas("ikev2", f"ikev2://{SRV}:4500", obs4500, ctl4500, start=8.0, run="r2")
    assert verdict_for(blocked500, [other_run]).method == "vpn.ikev2.blocked.port_or_fingerprint"
    obs_same, ctl_same = vpn("ikev2", "ikev2_sa_init", 500, "udp", result="SA")
    same_port = meas("ikev2", f"ikev2://{SRV}:500?nat_t=0", obs_same, ctl_same, start=8.0)
    assert verdict_for(blocked500, [same_port]).method == "vpn.ikev2.blocked.port_or_fingerprint"
    # nor a measurement hours apart
    later = meas("ikev2", f"ikev2://{SRV}:4500", obs4500, ctl4500, start=3 * 3600.0)
    assert verdict_for(blocked500, [later]).method == "vpn.ikev2.blocked.port_or_fingerprint"


def test_udp_other_port_silence_that_was_expected_is_no_evidence():
    obs, ctl = vpn("wireguard", "wireguard_handshake", 51820, "udp", hs_failure="generic_timeout_error")
    blocked_wg = meas("wireguard", f"wireguard://{SRV}:51820", obs, ctl)
    silent_obs, silent_ctl = vpn("wireguard", "wireguard_handshake", 51821, "udp", response_expected=False,
                                 responses=[], outcome="no_response_expected")
    silent = meas("wireguard", f"wireguard://{SRV}:51821", silent_obs, silent_ctl, start=3.0)
    assert verdict_for(blocked_wg, [silent]).method == "vpn.wireguard.blocked.port_or_fingerprint"
    # and that measurement on its own proves nothing either
    v = verdict_for(silent)
    assert v.verdict == "inconclusive" and "no answer was expected" in v.evidence


def test_down_when_the_control_fails_too():
    obs, ctl = vpn("wireguard", "wireguard_handshake", 51820, "udp", hs_failure="generic_timeout_error",
                   ctl_hs_failure="generic_timeout_error")
    v = verdict_for(meas("wireguard", f"wireguard://{SRV}:51820", obs, ctl))
    assert (v.verdict, v.method) == ("down", None)


# --- residual state is per (transport, address, port) ------------------------------------------
def _trigger_and_bystander(bystander_proto):
    obs, ctl = vpn("openvpn", "openvpn_handshake", 1194, "udp", hs_failure="generic_timeout_error")
    trigger = meas("openvpn", f"openvpn://{SRV}:1194?proto=udp", obs, ctl, start=0.0)
    op = "wireguard_handshake" if bystander_proto == "udp" else "ssh_banner"
    probe = "wireguard" if bystander_proto == "udp" else "ssh"
    obs2, ctl2 = vpn(probe, op, 1194, bystander_proto, hs_failure="generic_timeout_error")
    return trigger, meas(probe, f"{probe}://{SRV}:1194", obs2, ctl2, start=20.0)


def test_residual_state_of_udp_port_does_not_explain_tcp_failure_on_that_port_number():
    trigger, bystander = _trigger_and_bystander("tcp")
    got = {m.id: v for m, v in judge_batch([trigger, bystander])}
    assert got[trigger["measurement_id"]].method == "vpn.openvpn.blocked.port_or_fingerprint"
    assert (got[bystander["measurement_id"]].verdict,
            got[bystander["measurement_id"]].method) == ("blocked", "vpn.ssh.blocked.fingerprint")


def test_residual_state_on_the_same_udp_endpoint_is_residual():
    trigger, bystander = _trigger_and_bystander("udp")
    got = {m.id: v for m, v in judge_batch([trigger, bystander])}
    v = got[bystander["measurement_id"]]
    assert (v.verdict, v.method) == ("inconclusive", "residual")
    assert trigger["measurement_id"] in v.evidence


# --- fet: singled out vs residual ----------------------------------------------------------------
def _fet(i, failure=None, kind="fet"):
    return ob("fet_attempt", i, failure, t0=float(i), address=f"{SRV}:9999", kind=kind, attempt=i)


def _fet_ctl():
    return [_fet(i, kind="fet" if i % 2 else "control") for i in range(1, 9)]


def test_fet_singled_out_while_exempt_payloads_pass():
    obs = [_fet(i, "generic_timeout_error" if i in (3, 7) else None, kind="fet" if i % 2 else "control")
           for i in range(1, 11)]
    v = verdict_for(meas("fet", f"fet://{SRV}:9999", obs, _fet_ctl()))
    assert (v.verdict, v.method) == ("blocked", "vpn.fet.blocked.fet")
    assert "2 of 5 non-exempt attempts failed" in v.evidence and "all 5 exempt attempts got answers" in v.evidence


def test_fet_trigger_then_exempt_failures_is_residual():
    obs = [_fet(1), _fet(2, kind="control"), _fet(3, "generic_timeout_error"),
           _fet(4, "generic_timeout_error", kind="control"), _fet(5, "generic_timeout_error"),
           _fet(6, "generic_timeout_error", kind="followup")]
    v = verdict_for(meas("fet", f"fet://{SRV}:9999", obs, _fet_ctl()))
    assert (v.verdict, v.method) == ("blocked", "vpn.fet.blocked.residual")
    assert "fet_attempt #3" in v.evidence and "residual blocking" in v.evidence


def test_fet_single_non_exempt_failure_with_exempt_passing_is_inconclusive():
    obs = [_fet(i, "generic_timeout_error" if i == 3 else None, kind="fet" if i % 2 else "control")
           for i in range(1, 11)]
    assert verdict_for(meas("fet", f"fet://{SRV}:9999", obs, _fet_ctl())).verdict == "inconclusive"
