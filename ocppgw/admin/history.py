# -*- test-case-name: tests.unit.admin.test_flight -*-
"""
A flight recorder history as the API returns it (issue 21): each stored
frame made a record, its fields worked out on reading.

- ``MessageTypeId``, ``UniqueId``, ``Action`` of a WebSocket frame: from its
  text (OCPP-J 1.6 §4.1.3: ``[type, id, ...]``); an answer carries the
  ``Action`` of its CALL and ``LatencyMs`` since it, when the CALL is still
  in the history.
- ``Verdict``: ``"accepted"``, or for a CALL (or SEND) the gateway answered
  with a CALLERROR itself instead of relaying it, ``{"ErrorCode",
  "ErrorDescription"}`` of that CALLERROR; a frame that is no OCPP-J message
  is refused (``FormatViolation``, or the error the gateway answered), as is
  a downstream payload the topic's codec cannot decode.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocppgw.admin.flight import (
    DIRECTIONS,
    FROM_BACKEND,
    FROM_CHARGE_POINT,
    TO_BACKEND,
    TO_CHARGE_POINT,
    Frame,
)

#: A call from each direction: the direction it is relayed in, and the one
#: its answer comes back in.
_FORWARD = {FROM_CHARGE_POINT: TO_BACKEND, FROM_BACKEND: TO_CHARGE_POINT}
_BACK = {FROM_CHARGE_POINT: TO_CHARGE_POINT, FROM_BACKEND: TO_BACKEND}
#: The direction of a CALL that an answer in a direction answers.
_ANSWERS = {
    TO_CHARGE_POINT: FROM_CHARGE_POINT,
    FROM_CHARGE_POINT: TO_CHARGE_POINT,
    TO_BACKEND: FROM_BACKEND,
    FROM_BACKEND: TO_BACKEND,
}
_CALL, _RESULT, _ERROR, _RESULT_ERROR, _SEND = 2, 3, 4, 5, 6
UNREADABLE = {"ErrorCode": "FormatViolation", "ErrorDescription": "not an OCPP-J message"}
UNDECODABLE = {
    "ErrorCode": "FormatViolation",
    "ErrorDescription": "not a message the topic's codec decodes",
}


@dataclass(frozen=True)
class Filters:
    """What ``GET .../messages`` selects; None: any."""

    limit: int = 100
    since: int | None = None  # ms since the epoch
    until: int | None = None
    action: str | None = None
    direction: str | None = None
    unique_id: str | None = None
    type: int | None = None

    def match(self, record: dict[str, Any], at: int) -> bool:
        return (
            (self.since is None or at >= self.since)
            and (self.until is None or at <= self.until)
            and (self.action is None or record["Action"] == self.action)
            and (self.direction is None or record["Direction"] == self.direction)
            and (self.unique_id is None or record["UniqueId"] == self.unique_id)
            and (self.type is None or record["MessageTypeId"] == self.type)
        )


def time_text(ms: int) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-12-06T14:02:03.123Z``."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _fields(frame: Frame) -> tuple[int | None, str | None, str | None, Any]:
    """MessageTypeId, UniqueId, Action (of a CALL) and the error (of an error) of ``frame``."""
    _, _, data, topic, kind, uid, action = frame
    if topic is not None:
        if isinstance(action, tuple):
            return kind, uid, None, {"ErrorCode": action[0], "ErrorDescription": action[1]}
        return kind, uid, action, None
    try:
        parsed = json.loads(data)  # type: ignore[arg-type]
        kind, uid = parsed[0], parsed[1]
    except (ValueError, TypeError, IndexError, KeyError):
        return None, None, None, None
    if not isinstance(kind, int) or not isinstance(uid, str):
        return None, None, None, None
    if kind in (_CALL, _SEND) and len(parsed) > 2 and isinstance(parsed[2], str):
        return kind, uid, parsed[2], None
    if kind in (_ERROR, _RESULT_ERROR) and len(parsed) > 3:
        return kind, uid, None, {"ErrorCode": parsed[2], "ErrorDescription": parsed[3]}
    return kind, uid, None, None


def records(frames: Iterable[Frame]) -> list[dict[str, Any]]:
    """Every frame made a record, oldest first, with ``_ms`` (its time) for filtering."""
    out: list[dict[str, Any]] = []
    #: (direction of the CALL, UniqueId) -> (its record, its time, Action).
    calls: dict[tuple[int, str | None], tuple[dict[str, Any], int, str | None]] = {}
    unreadable: dict[str, Any] | None = None
    for frame in frames:
        at, direction, data, topic = frame[0], frame[1], frame[2], frame[3]
        kind, uid, action, error = _fields(frame)
        record: dict[str, Any] = {
            "Time": time_text(at),
            "Direction": DIRECTIONS[direction],
            "MessageTypeId": kind,
            "UniqueId": uid,
            "Action": action,
            "Topic": topic,
            "Frame": data,
            "Verdict": "accepted",
            "LatencyMs": None,
        }
        if isinstance(data, bytes):
            record["Frame"] = base64.b64encode(data).decode("ascii")
            record["Encoding"] = "base64"
        if kind is None and direction == FROM_CHARGE_POINT:
            record["Verdict"] = dict(UNREADABLE)
            unreadable = record
        elif kind is None and direction == FROM_BACKEND:
            record["Verdict"] = dict(UNDECODABLE)
        elif kind in (_CALL, _SEND):
            calls[(direction, uid)] = (record, at, action)
        elif kind in (_RESULT, _ERROR, _RESULT_ERROR):
            called = calls.pop((_ANSWERS[direction], uid), None)
            if called is not None:
                call, started, record["Action"] = called
                record["LatencyMs"] = at - started
                if kind == _ERROR and _BACK.get(call["_dir"]) == direction and not call["_on"]:
                    call["Verdict"] = error  # answered here, never relayed: refused
            elif kind == _ERROR and unreadable is not None and direction == TO_CHARGE_POINT:
                unreadable["Verdict"] = error
            if direction == TO_CHARGE_POINT:
                unreadable = None
        if kind in (_CALL, _SEND) and direction in _BACK:
            record["_on"] = False
        forwarded = _forwarded(calls, direction, kind, uid)
        if forwarded is not None:
            forwarded["_on"] = True
        record["_dir"], record["_ms"] = direction, at
        out.append(record)
    return out


def _forwarded(
    calls: dict[tuple[int, str | None], tuple[dict[str, Any], int, str | None]],
    direction: int,
    kind: int | None,
    uid: str | None,
) -> dict[str, Any] | None:
    """The CALL record that a CALL in ``direction`` relays, if any."""
    if kind not in (_CALL, _SEND):
        return None
    for source, target in _FORWARD.items():
        if target == direction:
            found = calls.get((source, uid))
            return found[0] if found is not None else None
    return None


def select(frames: Iterable[Frame], filters: Filters) -> list[dict[str, Any]]:
    """The newest ``filters.limit`` records that match, oldest first, as the API returns them."""
    chosen = [r for r in records(frames) if filters.match(r, r["_ms"])]
    chosen = chosen[-filters.limit :] if filters.limit > 0 else []
    for record in chosen:
        del record["_dir"], record["_ms"]
        record.pop("_on", None)
    return chosen
