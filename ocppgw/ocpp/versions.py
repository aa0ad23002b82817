# -*- test-case-name: tests.unit.ocpp.test_messages -*-
"""
OCPP versions, their WebSocket subprotocol names, and their error codes.

Error code names differ between OCPP 1.6 and 2.x (OCPP-J 1.6 Table 7, OCPP 2.0.1
Part 4 Table 8, OCPP 2.1 Part 4 Table 9); the 1.6 misspellings are kept on purpose
(OCPP-J 1.6 errata 5.1, 5.2: "Do not fix").  The rest of the gateway names an
error by its meaning (:class:`ErrorKind`) and asks :func:`error_code` for the
name that the charge point's version uses.
"""

from __future__ import annotations

from enum import Enum

OCPP16 = "ocpp1.6"
OCPP201 = "ocpp2.0.1"
OCPP21 = "ocpp2.1"

#: Every version the gateway speaks, in order of preference.
SUPPORTED: tuple[str, ...] = (OCPP16, OCPP201, OCPP21)


def is_2x(version: str) -> bool:
    """True for OCPP 2.0.1 and 2.1."""
    return version != OCPP16


def has_21_types(version: str) -> bool:
    """True where CALLRESULTERROR (5) and SEND (6) exist: OCPP 2.1 Part 4 §4.2.4."""
    return version == OCPP21


class ErrorKind(Enum):
    """What went wrong, independent of the version's spelling."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL = "InternalError"
    PROTOCOL = "ProtocolError"
    SECURITY = "SecurityError"
    FORMAT = "FormatViolation"
    PROPERTY_CONSTRAINT = "PropertyConstraintViolation"
    OCCURRENCE_CONSTRAINT = "OccurrenceConstraintViolation"
    TYPE_CONSTRAINT = "TypeConstraintViolation"
    GENERIC = "GenericError"
    RPC_FRAMEWORK = "RpcFrameworkError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"


#: How OCPP 1.6 spells each kind.  1.6 has no RpcFrameworkError and no
#: MessageTypeNotSupported; an unreadable frame or an unknown message type
#: "does not conform the PDU structure", which 1.6 calls FormationViolation
#: (OCPP-J 1.6 Table 7).  This choice is documented in docs/rules.md.
_OCPP16_CODES = {
    ErrorKind.FORMAT: "FormationViolation",
    ErrorKind.OCCURRENCE_CONSTRAINT: "OccurenceConstraintViolation",
    ErrorKind.RPC_FRAMEWORK: "FormationViolation",
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "FormationViolation",
}

#: Every error code a 1.6 peer may send (OCPP-J 1.6 Table 7).
OCPP16_ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)

#: Every error code a 2.x peer may send (2.0.1 Part 4 Table 8, 2.1 Part 4 Table 9).
OCPP2_ERROR_CODES = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)


def error_code(version: str, kind: ErrorKind) -> str:
    """The error code string that ``version`` uses for ``kind``."""
    if version == OCPP16:
        return _OCPP16_CODES.get(kind, kind.value)
    return kind.value


def error_codes(version: str) -> frozenset[str]:
    """The error codes that are valid on a connection of ``version``."""
    return OCPP16_ERROR_CODES if version == OCPP16 else OCPP2_ERROR_CODES
