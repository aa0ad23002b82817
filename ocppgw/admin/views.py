# -*- test-case-name: tests.integration.test_admin_api -*-
"""
What the admin API shows, as JSON-ready dicts: charge points (from the
router's sessions and the :class:`~ocppgw.admin.records.Recorder`), the
gateway, and its health.  Read-only: nothing here changes a session.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any

from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.session.rules import Phase

if TYPE_CHECKING:
    from ocppgw.admin.records import Record
    from ocppgw.session.rules import Session

#: Paging of GET /api/v1/chargepoints.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATES = ("connected", "grace")


class QueryError(ValueError):
    """A query parameter that cannot be used; the text names it."""


def state_of(session: Session) -> str:
    """``connected`` (open or closing) or ``grace`` (waiting for a reconnection)."""
    return "connected" if session.phase in (Phase.OPEN, Phase.CLOSING) else "grace"


def _time(seconds: float | None) -> str | None:
    return None if seconds is None else rfc3339(seconds)


def summary(session: Session, record: Record | None) -> dict[str, Any]:
    """One charge point as ``GET /api/v1/chargepoints`` lists it."""
    return {
        "identity": session.identity,
        "version": session.version,
        "listener": record.listener if record else None,
        "security_profile": record.profile if record else None,
        "remote_address": record.peer if record else None,
        "connected_since": _time(record.connected_since) if record else None,
        "last_message_at": _time(record.last_message_at) if record else None,
        "state": state_of(session),
        "registration": session.registration,
        "queue_length": session.queued(),
        "messages_in": record.messages_in if record else 0,
        "messages_out": record.messages_out if record else 0,
    }


def details(session: Session | None, record: Record) -> dict[str, Any]:
    """One charge point as ``GET /api/v1/chargepoints/{id}`` shows it."""
    if session is not None:
        body = summary(session, record)
        # Forward mode: the session's connection is the relay's turns, which
        # tell the central system's (and mirrors') connection states.
        forward = getattr(session.connection, "state", None)
        if callable(forward):
            body["forward"] = forward()
    else:
        body = {
            "identity": record.identity,
            "version": record.version,
            "listener": record.listener,
            "security_profile": record.profile,
            "remote_address": record.peer,
            "connected_since": None,
            "last_message_at": _time(record.last_message_at),
            "state": "offline",
            "registration": None,
            "queue_length": 0,
            "messages_in": record.messages_in,
            "messages_out": record.messages_out,
        }
    body["bytes_in"] = record.bytes_in
    body["bytes_out"] = record.bytes_out
    body["messages"] = [
        {"direction": d, "type": t, "action": a or None, "count": n}
        for (d, t, a), n in sorted(record.by_type.items())
    ]
    body["errors"] = dict(sorted(record.errors.items()))
    body["events"] = [{**e, "time": rfc3339(e["time"])} for e in record.events]
    return body


def _like(pattern: str) -> re.Pattern[str]:
    """SQL LIKE: ``%`` any run of characters, ``_`` one character."""
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def encode_cursor(identity: str) -> str:
    return base64.urlsafe_b64encode(identity.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise QueryError("cursor: not a cursor this API returned") from None


def page(
    sessions: list[Session], records: dict[str, Record], query: dict[str, str]
) -> dict[str, Any]:
    """The page of charge points ``query`` asks for (filters, ``limit``, ``cursor``)."""
    unknown = set(query) - {"version", "state", "identity_like", "limit", "cursor"}
    if unknown:
        raise QueryError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise QueryError(f"limit: not a number: {query['limit']!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: must be 1 to {MAX_LIMIT}")
    state = query.get("state")
    if state is not None and state not in STATES:
        raise QueryError(f"state: must be one of {', '.join(STATES)}")
    version = query.get("version")
    like = _like(query["identity_like"]) if "identity_like" in query else None
    after = decode_cursor(query["cursor"]) if "cursor" in query else None
    chosen = sorted(
        (
            s
            for s in sessions
            if (version is None or s.version == version)
            and (state is None or state_of(s) == state)
            and (like is None or like.fullmatch(s.identity))
            and (after is None or s.identity > after)
        ),
        key=lambda s: s.identity,
    )
    shown = chosen[:limit]
    more = len(chosen) > limit
    return {
        "chargepoints": [summary(s, records.get(s.identity)) for s in shown],
        "next_cursor": encode_cursor(shown[-1].identity) if more else None,
    }
