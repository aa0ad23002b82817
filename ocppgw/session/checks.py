# -*- test-case-name: tests.unit.session.test_session_rules -*-
"""
Schema validation of one session's messages, both ways, where it is on:

- an invalid message from the charge point is logged and reported on the
  invalid topic; what it is answered is the caller's (2.0.1 Part 4 §4.1.7);
- an invalid message from the backend is never sent: the caller answers the
  backend with the reason this gives.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from ocppgw.session.options import Validate, Violation
from ocppgw.session.outbox import Outbox

_log = Logger()


def upstream_violation(
    validate: Validate | None,
    outbox: Outbox,
    action: str,
    request: bool,
    payload: dict[str, Any],
    text: str,
) -> Violation | None:
    """What is wrong with the charge point's message ``text``, reported; None if valid."""
    if validate is None:
        return None
    violation = validate(outbox.version, action, request, payload)
    if violation is not None:
        _log.warn(
            "{cid}: invalid {action}{kind}: {why}",
            cid=outbox.identity,
            action=action,
            kind="" if request else " response",
            why=violation.description,
        )
        outbox.publish_invalid(text)
    return violation


def downstream_refusal(
    validate: Validate | None, version: str, action: str, request: bool, payload: dict[str, Any]
) -> str | None:
    """Why the backend's message is not sent to the charge point; None if valid."""
    if validate is None:
        return None
    violation = validate(version, action, request, payload)
    if violation is None:
        return None
    return f"not sent to the charge point: {violation.description}"
