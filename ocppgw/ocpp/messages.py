# -*- test-case-name: tests.unit.ocpp.test_messages -*-
"""
OCPP-J RPC messages as frozen values, and their text framing.

The five message types (OCPP-J 1.6 §4.2, OCPP 2.0.1 Part 4 §4.2, OCPP 2.1
Part 4 §4.1.3-4.2.4)::

    CALL             [2, "<id>", "<Action>", {payload}]
    CALLRESULT       [3, "<id>", {payload}]
    CALLERROR        [4, "<id>", "<errorCode>", "<errorDescription>", {errorDetails}]
    CALLRESULTERROR  [5, "<id>", "<errorCode>", "<errorDescription>", {errorDetails}]  (2.1)
    SEND             [6, "<id>", "<Action>", {payload}]                                (2.1)

:func:`parse_frame` turns the text of one WebSocket frame into one of these
values, or raises :class:`FrameError` saying what is wrong with it and how the
sender's version wants that reported.  :func:`encode_frame` is its inverse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from ocppgw.ocpp.frozen import fast_init
from ocppgw.ocpp.jsontext import LoneSurrogate, NonFiniteNumber, dumps, loads, why_not_json
from ocppgw.ocpp.versions import ErrorKind, has_21_types

#: OCPP-J 1.6 §4.1.4, OCPP 2.0.1 Part 4 Table 4: a message id is a string of
#: at most 36 characters.
MAX_UNIQUE_ID_LENGTH = 36

#: OCPP 2.0.1 Part 4 §4.2.3, OCPP 2.1 Part 4 §4.2.3: when the message id of an
#: unreadable message cannot be read, the CALLERROR carries "-1".  1.6 has no
#: rule; the gateway uses "-1" there too.
UNREADABLE_ID = "-1"

#: OCPP 2.0.1 Part 4 Table 7: errorDescription is string[255].
MAX_ERROR_DESCRIPTION_LENGTH = 255


class MessageType(IntEnum):
    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5
    SEND = 6


JSONObject = dict[str, Any]


# In the order of their MessageTypeId (OCPP-J 1.6 §4.2, 2.1 Part 4 §4.1.3-4.2.4).


@dataclass(frozen=True, slots=True)
class _Request:
    """What a CALL and a SEND carry: an id, an Action and its payload."""

    unique_id: str
    action: str
    payload: JSONObject


@fast_init
@dataclass(frozen=True, slots=True)
class Call(_Request):
    """A request: the sender waits for a CALLRESULT or CALLERROR."""

    message_type: MessageType = field(default=MessageType.CALL, init=False)


@fast_init
@dataclass(frozen=True, slots=True)
class CallResult:
    """The answer to a CALL.  ``action`` is not on the wire; the gateway adds it."""

    unique_id: str
    payload: JSONObject
    action: str | None = None
    message_type: MessageType = field(default=MessageType.CALLRESULT, init=False)


@dataclass(frozen=True, slots=True)
class _Error:
    """What both error types carry.  ``action`` is not on the wire; the gateway adds it."""

    unique_id: str
    error_code: str
    error_description: str = ""
    error_details: JSONObject = field(default_factory=dict)
    action: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class CallError(_Error):
    """A CALL could not be handled."""

    message_type: MessageType = field(default=MessageType.CALLERROR, init=False)


@fast_init
@dataclass(frozen=True, slots=True)
class CallResultError(_Error):
    """OCPP 2.1: a CALLRESULT could not be handled (2.1 Part 4 §4.2.4)."""

    message_type: MessageType = field(default=MessageType.CALLRESULTERROR, init=False)


@fast_init
@dataclass(frozen=True, slots=True)
class Send(_Request):
    """OCPP 2.1 SEND: like a CALL but never answered (2.1 Part 4 §4.2.5)."""

    message_type: MessageType = field(default=MessageType.SEND, init=False)


Message = Call | Send | CallResult | CallError | CallResultError

#: The types that start an exchange (they carry an Action).
Request = Call | Send
#: The types that answer a CALL (they carry no Action on the wire).
Answer = CallResult | CallError
ErrorMessage = CallError | CallResultError


class FrameError(Exception):
    """
    A frame that is not a valid OCPP-J message.

    ``unique_id`` is the id to answer with (:data:`UNREADABLE_ID` when it could
    not be read); ``message_type`` is the type id when it could be read, so the
    receiver knows whether the sender was calling or answering.
    """

    def __init__(
        self,
        kind: ErrorKind,
        description: str,
        unique_id: str = UNREADABLE_ID,
        message_type: int | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.unique_id = unique_id
        self.message_type = message_type
        self.action = action


#: MessageTypeId -> MessageType: a dict lookup, where calling the enum is slow.
MESSAGE_TYPES: dict[int, MessageType] = {int(t): t for t in MessageType}
_ALL_TYPES = MESSAGE_TYPES
_BASE_TYPES = {int(t): t for t in (MessageType.CALL, MessageType.CALLRESULT, MessageType.CALLERROR)}


# The members as globals, for the per-message comparisons below: reading one off
# its Enum class goes through EnumType's attribute lookup (about 65 ns each in
# Python 3.11, against 5 for a global).
_CALL = MessageType.CALL
_CALLRESULT = MessageType.CALLRESULT
_CALLERROR = MessageType.CALLERROR
_SEND = MessageType.SEND


def _known_types(version: str) -> dict[int, MessageType]:
    return _ALL_TYPES if has_21_types(version) else _BASE_TYPES


def check_unique_id(value: object) -> str | None:
    """The message id if ``value`` is a valid one, else ``None``."""
    if isinstance(value, str) and 0 < len(value) <= MAX_UNIQUE_ID_LENGTH:
        return value
    return None


def parse_frame(text: str, version: str) -> Message:
    """
    Parse one text frame received on a connection speaking ``version``.

    :raises FrameError: the frame is not a valid message of that version.
    """
    try:
        frame = loads(text)
    except (NonFiniteNumber, LoneSurrogate) as e:
        lenient = _lenient(text)
        if lenient is not None:
            # Valid structure, but a number RFC 8259 §6 or a string §8.2 does
            # not allow: the payload is malformed (1.6 FormationViolation, 2.x
            # FormatViolation).
            unique_id, type_id = lenient
            raise FrameError(ErrorKind.FORMAT, str(e), unique_id, type_id) from None
        raise FrameError(
            ErrorKind.RPC_FRAMEWORK, f"frame is not valid JSON: {why_not_json(e)}"
        ) from None
    except json.JSONDecodeError as e:
        # OCPP 2.0.1 Part 4 §4.2.3: the reply must not echo invalid JSON.
        raise FrameError(
            ErrorKind.RPC_FRAMEWORK, f"frame is not valid JSON: {why_not_json(e)}"
        ) from None
    except RecursionError:
        raise _beyond_limits(text, "the frame nests arrays or objects too deeply") from None
    except ValueError:
        # The one other ValueError a str decodes to: an integer longer than
        # Python converts (sys.set_int_max_str_digits).  Its text, like the
        # RecursionError's, names Python internals: never sent on.
        raise _beyond_limits(text, "a number in the frame has too many digits") from None
    return parse_value(frame, version)


#: The type and id a frame starts with, read without decoding the rest.
_HEAD = re.compile(r'\A[ \t\n\r]*\[[ \t\n\r]*([0-9]{1,2})[ \t\n\r]*,[ \t\n\r]*"([^"\\]{1,36})"')


def _beyond_limits(text: str, why: str) -> FrameError:
    """
    A frame that is JSON but past what the gateway decodes: the version's
    format error (1.6 FormationViolation, 2.x FormatViolation), answered
    with the id its head shows, with a description of the gateway's own.
    """
    head = _HEAD.match(text)
    if head is None:
        return FrameError(ErrorKind.FORMAT, why)
    return FrameError(ErrorKind.FORMAT, why, head.group(2), int(head.group(1)))


def parse_value(frame: object, version: str) -> Message:
    """Parse an already decoded JSON value as an OCPP-J message of ``version``."""
    if not isinstance(frame, list) or not frame:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "frame is not a non-empty JSON array")
    type_id = frame[0]
    if not isinstance(type_id, int) or isinstance(type_id, bool):
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "MessageTypeId is not an integer")
    raw_id = frame[1] if len(frame) > 1 else None
    unique_id = check_unique_id(raw_id)
    mtype = _known_types(version).get(type_id)
    if mtype is None:
        # OCPP 2.0.1 Part 4 §4.4: MessageTypeNotSupported.
        raise FrameError(
            ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED,
            f"MessageTypeId {type_id} is not supported by {version}",
            unique_id or UNREADABLE_ID,
            type_id,
        )
    if unique_id is None:
        if isinstance(raw_id, str):
            why = f"MessageId is {'empty' if not raw_id else 'longer than 36 characters'}"
        else:
            why = "MessageId is missing or not a string"
        raise FrameError(ErrorKind.RPC_FRAMEWORK, why, UNREADABLE_ID, type_id)
    if mtype is _CALL or mtype is _SEND:
        _expect_length(frame, 4, mtype, unique_id)
        action = frame[2]
        if not isinstance(action, str) or not action:
            raise FrameError(
                ErrorKind.RPC_FRAMEWORK, "Action is not a non-empty string", unique_id, type_id
            )
        payload = _payload(frame[3], version, unique_id, type_id, action)
        if mtype is _CALL:
            return Call(unique_id, action, payload)
        return Send(unique_id, action, payload)
    if mtype is _CALLRESULT:
        _expect_length(frame, 3, mtype, unique_id)
        return CallResult(unique_id, _payload(frame[2], version, unique_id, type_id, None))
    _expect_length(frame, 5, mtype, unique_id)
    code, description, details = frame[2], frame[3], frame[4]
    if not isinstance(code, str) or not code:
        raise FrameError(
            ErrorKind.RPC_FRAMEWORK, "ErrorCode is not a non-empty string", unique_id, type_id
        )
    if not isinstance(description, str):
        raise FrameError(
            ErrorKind.RPC_FRAMEWORK, "ErrorDescription is not a string", unique_id, type_id
        )
    if details is None:
        # OCPP-J 1.6 Table 6 says {} when empty; some chargers send null.
        details = {}
    if not isinstance(details, dict):
        raise FrameError(
            ErrorKind.RPC_FRAMEWORK, "ErrorDetails is not a JSON object", unique_id, type_id
        )
    if mtype is _CALLERROR:
        return CallError(unique_id, code, description, details)
    return CallResultError(unique_id, code, description, details)


def _expect_length(frame: list[Any], n: int, mtype: MessageType, unique_id: str) -> None:
    if len(frame) != n:
        raise FrameError(
            ErrorKind.RPC_FRAMEWORK,
            f"{mtype.name} must have {n} elements, not {len(frame)}",
            unique_id,
            int(mtype),
        )


def _payload(
    value: object, version: str, unique_id: str, type_id: int, action: str | None
) -> JSONObject:
    if isinstance(value, dict):
        return value
    if value is None and version == "ocpp1.6":
        # OCPP-J 1.6 §4.2.1 only prefers {} over null for an empty payload.
        return {}
    raise FrameError(ErrorKind.FORMAT, "Payload is not a JSON object", unique_id, type_id, action)


def to_value(message: Message) -> list[Any]:
    """The JSON array of ``message`` as OCPP-J sends it."""
    if isinstance(message, Call | Send):
        return [int(message.message_type), message.unique_id, message.action, message.payload]
    if isinstance(message, CallResult):
        return [3, message.unique_id, message.payload]
    return [
        int(message.message_type),
        message.unique_id,
        message.error_code,
        message.error_description[:MAX_ERROR_DESCRIPTION_LENGTH],
        message.error_details,
    ]


def encode_frame(message: Message) -> str:
    """The OCPP-J text frame of ``message``."""
    return dumps(to_value(message))


def _lenient(text: str) -> tuple[str, int | None] | None:
    """
    The message id and type of a frame that only strict JSON refuses; None
    when it is not JSON even to Python.
    """
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, list) or len(frame) < 2:
        return UNREADABLE_ID, None
    type_id = frame[0] if isinstance(frame[0], int) and not isinstance(frame[0], bool) else None
    return check_unique_id(frame[1]) or UNREADABLE_ID, type_id


def unique_id_of(payload: bytes | str) -> str | None:
    """
    The UniqueId of a JSON envelope that only strict JSON refuses (``NaN``,
    ``1e999``: RFC 8259 §6), so the backend learns which message failed.
    """
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    unique_id = value.get("UniqueId") if isinstance(value, dict) else None
    return unique_id if isinstance(unique_id, str) and unique_id else None
