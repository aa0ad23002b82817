# -*- test-case-name: tests.unit.router.test_codecs,tests.unit.router.test_protobuf_roundtrip -*-
"""
Building a message from envelope fields, shared by the envelope codecs.

The JSON envelope and the protobuf ``Message`` wrapper carry the same fields
(MessageTypeId, UniqueId, Action, Payload, ErrorCode, ErrorDescription,
ErrorDetails); both check them here, so a backend gets the same error for the
same mistake whichever profile it speaks.  Both also read JSON objects from
bytes (the JSON envelope itself, a protobuf payload sent as JSON) with
:func:`json_object`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ocppgw.ocpp.envelope import CodecError
from ocppgw.ocpp.jsontext import loads, why_not_json
from ocppgw.ocpp.messages import (
    MESSAGE_TYPES,
    Call,
    CallError,
    CallResult,
    CallResultError,
    Message,
    MessageType,
    Send,
    check_unique_id,
)
from ocppgw.ocpp.versions import error_codes, has_21_types

# The members as globals (an Enum class attribute costs a lookup each time).
_CALL = MessageType.CALL
_CALLRESULT = MessageType.CALLRESULT
_CALLERROR = MessageType.CALLERROR
_CALLRESULTERROR = MessageType.CALLRESULTERROR
_SEND = MessageType.SEND


def message_from_fields(
    version: str,
    type_id: object,
    unique_id: object,
    action: object = None,
    payload: object = None,
    error_code: object = None,
    error_description: object = None,
    error_details: object = None,
) -> Message:
    """
    The message these fields describe, for a charge point of ``version``.

    :raises CodecError: naming the first field that is missing or wrong.
    """
    if not isinstance(type_id, int) or isinstance(type_id, bool):
        raise CodecError("MessageTypeId is missing or not an integer")
    mtype = MESSAGE_TYPES.get(type_id)
    if mtype is None:
        raise CodecError(f"MessageTypeId {type_id} is not one of 2, 3, 4, 5, 6")
    if (mtype is _CALLRESULTERROR or mtype is _SEND) and not has_21_types(version):
        raise CodecError(f"MessageTypeId {type_id} does not exist in {version}")
    uid = check_unique_id(unique_id)
    if uid is None:
        raise CodecError("UniqueId must be a string of 1 to 36 characters")
    if mtype is _CALL or mtype is _SEND:
        if not isinstance(action, str) or not action:
            raise CodecError("Action is missing or not a non-empty string")
        body = _object("Payload", payload)
        return Call(uid, action, body) if mtype is _CALL else Send(uid, action, body)
    if mtype is _CALLRESULT:
        # Not on the OCPP-J wire, but an envelope may name it (a typed codec
        # needs it); anything but a string is left out.
        return CallResult(
            uid, _object("Payload", payload), action if isinstance(action, str) else None
        )
    if not isinstance(error_code, str) or not error_code:
        raise CodecError("ErrorCode is missing or not a non-empty string")
    valid = error_codes(version)
    if error_code not in valid:
        raise CodecError(
            f"ErrorCode {error_code!r} is not an error code of {version}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    if error_description is None:
        error_description = ""
    if not isinstance(error_description, str):
        raise CodecError("ErrorDescription is not a string")
    details = {} if error_details is None else _object("ErrorDetails", error_details)
    if mtype is _CALLERROR:
        return CallError(uid, error_code, error_description, details)
    return CallResultError(uid, error_code, error_description, details)


def sent_time(value: object) -> float | None:
    """
    A downstream envelope's ``Timestamp`` (when the backend sent it: RFC 3339
    with an offset) in seconds since the epoch; None when it has none.

    :raises CodecError: when it is there but not such a date-time.
    """
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CodecError(
            "Timestamp is not an RFC 3339 date-time (e.g. 2026-12-07T09:30:00.000Z)"
        ) from None
    if when.tzinfo is None:
        raise CodecError("Timestamp has no UTC offset (end it with Z or +hh:mm)")
    return when.timestamp()


def _object(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"{name} is missing or not a JSON object")
    return value


def json_object(
    data: bytes, error: Callable[[str], Exception], name: str, parsed_name: str = ""
) -> dict[str, Any]:
    """
    ``data`` read as the JSON object it must be.

    :raises error: saying that ``name`` (the bytes) is not UTF-8 JSON, or that
        ``parsed_name`` (what they hold; ``name`` too by default) is not a
        JSON object.
    """
    try:
        value = loads(data)
    except (ValueError, RecursionError) as e:
        raise error(f"{name} is not valid UTF-8 JSON: {why_not_json(e)}") from None
    if not isinstance(value, dict):
        raise error(f"{parsed_name or name} is not a JSON object")
    return value
