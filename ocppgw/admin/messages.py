# -*- test-case-name: tests.unit.admin.test_messages,tests.integration.test_flight -*-
"""
``GET /api/v1/chargepoints/{id}/messages`` and ``.../messages.jsonl``: a
charge point's flight recorder history (:mod:`ocppgw.admin.flight`), as a
JSON list or as JSON lines, oldest first, the newest ``limit`` records that
match the filters (issue 21).

Query: ``limit`` (1-10000, default 100), ``since`` and ``until`` (RFC 3339),
``action``, ``direction`` (FromChargePoint, ToChargePoint, ToBackend,
FromBackend), ``unique_id``, ``type`` (MessageTypeId 2-6).  ``follow=true``
(not with ``.jsonl``): the new records that match, as Server-Sent Events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from twisted.web.server import NOT_DONE_YET, Request

from ocppgw.admin.flight import DIRECTIONS, FlightRecorder, History
from ocppgw.admin.history import Filters, records
from ocppgw.admin.routes import HTTPError

#: The most records one answer holds.
MAX_LIMIT = 10_000
#: The query parameters of the route; ``follow`` is read by the route itself.
PARAMETERS = ("limit", "since", "until", "action", "direction", "unique_id", "type", "follow")


def _ms(name: str, value: str) -> int:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise HTTPError(400, f"{name}: not an RFC 3339 time: {value!r}") from None
    if moment.tzinfo is None:
        raise HTTPError(400, f"{name}: an RFC 3339 time needs its offset (Z or +hh:mm)")
    return int(moment.timestamp() * 1000)


def query_of(request: Request) -> dict[str, str]:
    """The query parameters of ``request``, each by its last value."""
    return {
        k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
        for k, v in (request.args or {}).items()
    }


def filters(query: Mapping[str, str]) -> Filters:
    """The filters of a request's query; :class:`HTTPError` 400 naming a bad one."""
    for name in query:
        if name not in PARAMETERS:
            raise HTTPError(400, f"{name}: no such parameter; known: {', '.join(PARAMETERS)}")
    limit = query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
        raise HTTPError(400, f"limit: a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    direction = query.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise HTTPError(400, f"direction: one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if query.get("follow", "false") not in ("true", "false"):
        raise HTTPError(400, f"follow: true or false, not {query['follow']!r}")
    kind = query.get("type")
    if kind is not None and kind not in ("2", "3", "4", "5", "6"):
        raise HTTPError(400, f"type: a MessageTypeId from 2 to 6, not {kind!r}")
    return Filters(
        limit=int(limit),
        since=_ms("since", query["since"]) if "since" in query else None,
        until=_ms("until", query["until"]) if "until" in query else None,
        action=query.get("action"),
        direction=direction,
        unique_id=query.get("unique_id"),
        type=int(kind) if kind is not None else None,
    )


def follow(request: Request, flight: FlightRecorder, identity: str, chosen: Filters) -> int:
    """
    Stream ``identity``'s new records that match ``chosen`` as Server-Sent
    Events (one record as JSON in each event's ``data``), until the client
    goes away.  Each is made when its frame is added, from the history (the
    answer's Action and latency need its CALL).
    """
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"text/event-stream")
    request.setHeader(b"cache-control", b"no-store")
    request.write(b": following " + identity.encode("utf-8", "replace") + b"\n\n")

    def told(history: History) -> None:
        record = records(history.frames)[-1]
        if chosen.match(record, record["_ms"]):
            public = {k: v for k, v in record.items() if not k.startswith("_")}
            request.write(b"data: " + json.dumps(public, ensure_ascii=False).encode() + b"\n\n")

    stop = flight.follow(identity, told)
    request.notifyFinish().addBoth(lambda _: stop())
    return NOT_DONE_YET


def render(request: Request, found: list[dict[str, Any]], lines: bool) -> bytes:
    """``found`` as a JSON list, or (``lines``) as JSON lines."""
    request.setResponseCode(200)
    request.setHeader(b"cache-control", b"no-store")
    if lines:
        request.setHeader(b"content-type", b"application/jsonl")
        return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in found)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(found, ensure_ascii=False).encode("utf-8") + b"\n"
