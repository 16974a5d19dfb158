"""The stored measurement: one JSON object per line (DESIGN.md §3).

The envelope stays close to OONI's so users recognise it::

    measurement_id, campaign, run_id, probe, probe_version, input, repetition,
    attempt, measurement_start_time, runtime, vantage{cc, asn, network, resolver},
    software{name, version}, observations[], control, annotations{}

``measurement_start_time`` is UTC ISO 8601 with microseconds and a ``Z``.
The vantage's own IP address is never stored unless the user asked for it
(``vantage.ip``, only present with ``--store-vantage-ip``).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import orjson

from censorscope import __version__

SOFTWARE = {"name": "censorscope", "version": __version__}

ENVELOPE_KEYS = (
    "measurement_id", "campaign", "run_id", "probe", "probe_version", "input", "repetition", "attempt",
    "measurement_start_time", "runtime", "vantage", "software", "observations", "control", "annotations",
)


@dataclass
class Vantage:
    """Where a measurement was taken from. ``ip`` stays None unless asked for."""

    cc: str | None = None
    asn: str | None = None
    network: str | None = None
    resolver: str | None = None
    ip: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Stored form; ``ip`` only when it was deliberately set."""
        # written out rather than dataclasses.asdict (a deep copy): this runs once per stored measurement
        d: dict[str, Any] = {"cc": self.cc, "asn": self.asn, "network": self.network, "resolver": self.resolver}
        if self.ip is not None:
            d["ip"] = self.ip
        return d


def utc_iso(ts: float) -> str:
    """A POSIX timestamp as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_measurement_id(ts: float) -> str:
    """A unique id that sorts by time: ``YYYYMMDDTHHMMSS.ffffffZ_<16 hex>``."""
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}_{os.urandom(8).hex()}"


def build_measurement(
    *,
    probe: str,
    probe_version: str,
    input: str,
    start_time: float,
    runtime: float,
    observations: list[dict[str, Any]],
    campaign: str | None = None,
    run_id: str | None = None,
    repetition: int = 0,
    attempt: int = 0,
    vantage: Vantage | None = None,
    control: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble one measurement in its stored form (keys in ``ENVELOPE_KEYS`` order)."""
    return {
        "measurement_id": new_measurement_id(start_time),
        "campaign": campaign,
        "run_id": run_id,
        "probe": probe,
        "probe_version": probe_version,
        "input": input,
        "repetition": repetition,
        "attempt": attempt,
        "measurement_start_time": utc_iso(start_time),
        "runtime": round(runtime, 6),
        "vantage": (vantage or Vantage()).to_dict(),
        "software": dict(SOFTWARE),
        "observations": observations,
        "control": control,
        "annotations": annotations or {},
    }


# --- the Parquet archive format (written by `gc`, read by censorscope.analysis) ---

SCALARS = ("measurement_id", "campaign", "run_id", "probe", "probe_version", "input")
INTS = ("repetition", "attempt")
JSON_COLUMNS = ("vantage", "software", "observations", "control", "annotations")
KNOWN_KEYS = frozenset(SCALARS + INTS + JSON_COLUMNS + ("measurement_start_time", "runtime"))


def parquet_schema() -> Any:
    """The pyarrow schema of the Parquet archive (see ``to_row``)."""
    import pyarrow as pa

    fields = [pa.field(k, pa.string()) for k in SCALARS]
    fields += [pa.field(k, pa.int64()) for k in INTS]
    fields += [pa.field("measurement_start_time", pa.string()), pa.field("runtime", pa.float64())]
    fields += [pa.field(f"vantage_{k}", pa.string()) for k in ("cc", "asn", "network", "resolver")]
    fields += [pa.field(k, pa.string()) for k in (*JSON_COLUMNS, "extra")]
    return pa.schema(fields)


def _dumps(v: Any) -> str | None:
    return None if v is None else orjson.dumps(v).decode()


def to_row(m: dict[str, Any]) -> dict[str, Any]:
    """One measurement as a Parquet row."""
    vantage = m.get("vantage") or {}
    row: dict[str, Any] = {k: (None if m.get(k) is None else str(m[k])) for k in SCALARS}
    row.update({k: (None if m.get(k) is None else int(m[k])) for k in INTS})
    row["measurement_start_time"] = m.get("measurement_start_time")
    row["runtime"] = None if m.get("runtime") is None else float(m["runtime"])
    for k in ("cc", "asn", "network", "resolver"):
        v = vantage.get(k)
        row[f"vantage_{k}"] = None if v is None else str(v)
    for k in JSON_COLUMNS:
        row[k] = _dumps(m[k]) if k in m else None
    extra = {k: v for k, v in m.items() if k not in KNOWN_KEYS}
    row["extra"] = _dumps(extra) if extra else None
    return row


def from_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the measurement a row was made from (inverse of ``to_row``)."""
    m: dict[str, Any] = {}
    for k in SCALARS + INTS + ("measurement_start_time", "runtime"):
        m[k] = row[k]
    for k in JSON_COLUMNS:
        m[k] = None if row[k] is None else orjson.loads(row[k])
    if row.get("extra"):
        m.update(orjson.loads(row["extra"]))
    return m
