# -*- test-case-name: tests.unit.forward.test_verdicts -*-
"""
``validation = observe``: the verdict on each relayed frame, as the flight
recorder gives it (``"accepted"``, or the refusal ``{"ErrorCode",
"ErrorDescription"}`` that MQTT mode's rules would have answered), and the
frame as a message for the tap; the frame itself is relayed whatever the
verdict.

The rules are MQTT mode's: the framing of OCPP-J (1.6 §4.1.3, 2.0.1 Part 4
§4.1.3) by :func:`~ocppgw.ocpp.messages.parse_frame`, then the schema of the
CALL's Action (and of its answer, matched by UniqueId to the CALL the other
side sent) when ``[validation] mode`` is not ``off``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ocppgw.ocpp.messages import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    FrameError,
    Message,
    Send,
    parse_frame,
)
from ocppgw.ocpp.versions import error_code

#: What a refused frame's verdict is: the CALLERROR's code and description.
Verdict = str | dict[str, str]
ACCEPTED = "accepted"

#: (version, action, request, payload) -> what is wrong, with ``kind`` and ``description``.
Validate = Callable[[str, str, bool, dict[str, Any]], Any]

#: CALLs remembered per side for their answer's Action (the oldest forgotten first).
MAX_REMEMBERED = 64


class Verdicts:
    """The verdicts on one charge point's frames, both ways."""

    def __init__(self, version: str, validate: Validate | None) -> None:
        self.version = version
        self._validate = validate
        #: Per sender (True: the charge point), the Action of its CALLs by UniqueId.
        self._calls: dict[bool, dict[str, str]] = {True: {}, False: {}}

    def judge(self, text: str, from_charge_point: bool) -> tuple[Message | None, Verdict]:
        """The frame ``text`` as a message (None if it is none) and its verdict."""
        version = self.version
        try:
            message = parse_frame(text, version)
        except FrameError as e:
            return None, {
                "ErrorCode": error_code(version, e.kind),
                "ErrorDescription": e.description,
            }
        kind = type(message)
        if kind is Call or kind is Send:
            assert isinstance(message, Call | Send)
            if kind is Call:
                calls = self._calls[from_charge_point]
                if len(calls) >= MAX_REMEMBERED:
                    del calls[next(iter(calls))]
                calls[message.unique_id] = message.action
            return message, self._check(message.action, True, message.payload)
        assert isinstance(message, CallResult | CallError | CallResultError)
        action = self._calls[not from_charge_point].pop(message.unique_id, None)
        if action is None:
            return message, ACCEPTED
        if isinstance(message, CallResult):
            answered = CallResult(message.unique_id, message.payload, action)
            return answered, self._check(action, False, message.payload)
        named = type(message)(
            message.unique_id,
            message.error_code,
            message.error_description,
            message.error_details,
            action,
        )
        return named, ACCEPTED

    def _check(self, action: str, request: bool, payload: dict[str, Any]) -> Verdict:
        if self._validate is None:
            return ACCEPTED
        violation = self._validate(self.version, action, request, payload)
        if violation is None:
            return ACCEPTED
        return {
            "ErrorCode": error_code(self.version, violation.kind),
            "ErrorDescription": violation.description,
        }
