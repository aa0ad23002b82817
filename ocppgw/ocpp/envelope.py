# -*- test-case-name: tests.unit.router.test_codecs -*-
"""
What travels between the gateway and the broker, before a codec gives it bytes.

An :class:`Envelope` is one OCPP-J message plus what the gateway knows about it
and the wire does not say: the charge point, its OCPP version, the Action of a
result or error, and whether the gateway itself made the message (a timeout,
an offline charge point...).  Codecs (:mod:`ocppgw.wire`) turn envelopes into
bytes and back; they never know a topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ocppgw.ocpp.frozen import fast_init
from ocppgw.ocpp.messages import Message


class GatewayError(Enum):
    """
    Error codes of error envelopes that the gateway itself publishes.

    They are not OCPP error codes: they tell the backend why the gateway could
    not deliver or complete an exchange.  Each envelope carrying one has
    ``Origin: "gateway"``.
    """

    #: The downstream message could not be decoded or is not a valid message.
    INVALID = "Invalid"
    #: The charge point is not connected to this gateway.
    OFFLINE = "Offline"
    #: The charge point's downstream queue is full.
    QUEUE_FULL = "QueueFull"
    #: No answer came in time.
    TIMEOUT = "Timeout"
    #: The backend's CALL was older than ``awaiting_timeout`` (by its
    #: ``Timestamp``) when its turn to be sent came: it was not sent.
    EXPIRED = "Expired"
    #: The charge point's registration forbids the backend's CALL: its
    #: BootNotification was answered Rejected, and its version (2.0.1, 2.1:
    #: B03.FR.03) lets the central system initiate nothing then.
    NOT_ACCEPTED = "NotAccepted"
    #: The connection was replaced by a newer one for the same identity.
    REPLACED = "Replaced"
    #: The answer matches no pending CALL.
    UNMATCHED = "Unmatched"
    #: The charge point disconnected before answering.
    DISCONNECTED = "Disconnected"
    #: The charge point's message failed validation.
    VALIDATION = "ValidationFailed"
    #: The gateway is shutting down.
    SHUTDOWN = "Shutdown"
    #: The charge point's answer or SEND could not be published (MQTT buffer full).
    NOT_PUBLISHED = "NotPublished"
    #: Handling the downstream message failed inside the gateway (a bug).
    INTERNAL = "Internal"


GATEWAY_ERROR_CODES: tuple[str, ...] = tuple(e.value for e in GatewayError)

#: The value of ``Origin`` on envelopes made by the gateway.
ORIGIN_GATEWAY = "gateway"


@fast_init
@dataclass(frozen=True, slots=True)
class Envelope:
    """One message between the gateway and the broker, with its metadata."""

    message: Message
    #: The OCPP version (subprotocol) of the charge point, e.g. ``ocpp1.6``.
    version: str | None = None
    #: The charge point identity.
    charge_point: str | None = None
    #: When the gateway received the message (RFC 3339, UTC), upstream only.
    timestamp: str | None = None
    #: ``"gateway"`` when the gateway made this message itself.
    origin: str | None = None
    #: True for an answer that arrived after its CALL had timed out.
    late: bool = False
    #: True for a CALL the gateway answered itself ([local] heartbeat, status_notification).
    answered: bool = False
    #: The OCPP-J text exactly as the charge point sent it, when there was one.
    frame: str | None = None
    #: Downstream: when the backend says it sent the message (its
    #: ``Timestamp``), in seconds since the epoch; None when it did not say.
    sent: float | None = None


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What a codec may need to decode a downstream message."""

    #: The OCPP version of the charge point the message is for.
    version: str
    #: The Action of the pending exchange with this message id, if any: a
    #: CALLRESULT does not name its Action, but a typed codec needs it.
    action_of: Callable[[str], str | None] = lambda unique_id: None


class CodecError(Exception):
    """
    Bytes that a codec cannot turn into a message; the text names the problem.

    ``unique_id`` and ``action`` are set when the codec could read them before
    finding the problem, so the error envelope names the exchange it refuses.
    """

    def __init__(
        self, message: str, unique_id: str | None = None, action: str | None = None
    ) -> None:
        super().__init__(message)
        self.unique_id = unique_id
        self.action = action

    def about(self, unique_id: object, action: object) -> CodecError:
        """This error, naming the exchange's id and Action where they are valid."""
        from ocppgw.ocpp.messages import check_unique_id

        return CodecError(
            str(self),
            self.unique_id or check_unique_id(unique_id),
            self.action or (action if isinstance(action, str) and action else None),
        )
