"""Helpers for the VPN lab tests: run a probe from the client and the control namespaces, judge it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from censorscope.analysis.verdicts import verdict_for
from censorscope.lab.vpn_servers import targets
from censorscope.probes import registry
from censorscope.probes.net import Net

T = targets()


def probe_in(lab: Any, role: str, probe: str, target: str, **options: Any) -> list[dict[str, Any]]:
    """Observations of ``probe`` run in namespace ``role`` of ``lab`` (lab CA trusted)."""
    module = registry.load(probe)
    opts = module.Options(**options)

    async def run() -> list[dict[str, Any]]:
        net = Net(ca_file=str(lab.ca_file))
        return [o.to_dict() for o in await module.measure(target, net, opts)]

    return lab.topo.run_async_in(role, run)


def measure(lab: Any, probe: str, target: str, *, control: bool = True, **options: Any) -> dict[str, Any]:
    """A measurement record: the client's observations plus the control namespace's as the control."""
    rec: dict[str, Any] = {
        "measurement_id": uuid.uuid4().hex, "probe": probe, "input": target,
        "observations": probe_in(lab, "client", probe, target, **options),
        "vantage": {"cc": "ZZ", "asn": "AS64496", "network": "censorscope lab client"},
    }
    if control:
        rec["control"] = {"observations": probe_in(lab, "control", probe, target, **options), "failure": None}
    return rec


def judge(lab: Any, probe: str, target: str, **options: Any) -> tuple[str, str | None, dict[str, Any]]:
    """(verdict, method, record) for one measurement."""
    rec = measure(lab, probe, target, **options)
    v = verdict_for(rec)
    return v.verdict, v.method, rec


def wg_options(lab: Any) -> dict[str, Any]:
    """The wireguard client keys of the lab's server."""
    info = lab.vpn.client_info()
    return {"pubkey": info["public_key"], "private_key": info["private_key"]}


def failures(rec: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(operation, failure) of the client's observations."""
    return [(o["operation"], o.get("failure")) for o in rec["observations"]]


def run(coro: Any) -> Any:
    """asyncio.run (kept here so tests need not import asyncio)."""
    return asyncio.run(coro)
