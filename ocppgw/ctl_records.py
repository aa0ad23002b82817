# -*- test-case-name: tests.integration.test_flight -*-
"""
How ``ocppgw-ctl messages`` and ``trace`` show a charge point's records from
the flight recorder (``GET /api/v1/chargepoints/{id}/messages``): exchanges
on one row each, and one line a record.  Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

#: The MessageTypeIds by name, for the tables.
_TYPES = {2: "CALL", 3: "CALLRESULT", 4: "CALLERROR", 5: "CALLRESULTERROR", 6: "SEND"}
#: Where a CALL starts, and the direction of the answer that closes it there.
_ORIGINS = {
    "FromChargePoint": ("charge point", "ToChargePoint"),
    "FromBackend": ("backend", "ToBackend"),
}


def _verdict(verdict: Any) -> str:
    if verdict == "accepted" or not isinstance(verdict, dict):
        return str(verdict)
    return f"refused: {verdict.get('ErrorCode')} ({verdict.get('ErrorDescription')})"


def exchanges(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    ``ocppgw-ctl messages``' rows: each CALL (or SEND) from a charge point or
    the backend with the answer it got back (its type, or the error code, and
    the latency); a frame that is no OCPP-J message on a row of its own.
    """
    rows: list[dict[str, Any]] = []
    open_calls: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in records:
        kind, direction = r.get("MessageTypeId"), r.get("Direction")
        if kind in (2, 6) and direction in _ORIGINS:
            origin, back = _ORIGINS[direction]
            row = {
                "time": r.get("Time"),
                "from": origin,
                "action": r.get("Action"),
                "unique_id": r.get("UniqueId"),
                "answer": None,
                "latency_ms": None,
                "verdict": _verdict(r.get("Verdict")),
            }
            rows.append(row)
            open_calls[(back, r.get("UniqueId"))] = row
        elif kind in (3, 4, 5):
            row = open_calls.pop((direction, r.get("UniqueId")), None)  # type: ignore[arg-type]
            if row is not None:
                frame = r.get("Frame") or ""
                code = ""
                if kind != 3:
                    try:
                        code = " " + str(json.loads(frame)[2])
                    except (ValueError, IndexError, TypeError):
                        code = ""
                row["answer"] = _TYPES[kind] + code
                row["latency_ms"] = r.get("LatencyMs")
        elif kind is None and direction == "FromChargePoint":
            rows.append(
                {
                    "time": r.get("Time"),
                    "from": "charge point",
                    "action": "(unreadable)",
                    "verdict": _verdict(r.get("Verdict")),
                }
            )
    return rows


def trace_line(r: dict[str, Any]) -> str:
    kind = _TYPES.get(r.get("MessageTypeId") or 0, "INVALID")
    latency = f" {r['LatencyMs']}ms" if r.get("LatencyMs") is not None else ""
    head = f"{r.get('Time')} {r.get('Direction'):15} {kind:10} {r.get('Action') or '-'}"
    return f"{head} {r.get('UniqueId')}{latency} {_verdict(r.get('Verdict'))}: {r.get('Frame')}"
