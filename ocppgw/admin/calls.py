# -*- test-case-name: tests.integration.test_admin_api -*-
"""
CALLs from the admin API to charge points.

A CALL from ``POST /api/v1/chargepoints/{id}/calls`` takes the path of a
downstream MQTT CALL from the router on: an :class:`~ocppgw.ocpp.envelope.Envelope`
handed to the charge point's session, which validates it, queues it behind
the CALL in flight (OCPP-J 1.6 §4.1.1: one at a time) and matches the
answer.  The answer (or the gateway's error envelope: Invalid, QueueFull,
Timeout, Disconnected...) is published upstream like any other, and the
router hands it to :class:`Calls` as it does (:mod:`ocppgw.router.awaited`),
which answers the HTTP request.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError

if TYPE_CHECKING:
    from ocppgw.router.routing import Router

#: HTTP status of each gateway error code answering an API CALL.
STATUS_OF = {
    GatewayError.INVALID.value: 400,
    GatewayError.OFFLINE.value: 404,
    GatewayError.QUEUE_FULL.value: 409,
    GatewayError.TIMEOUT.value: 504,
    GatewayError.SHUTDOWN.value: 503,
    GatewayError.NOT_ACCEPTED.value: 409,
}
#: ``path.to[0].field: what is wrong`` (ocppgw.ocpp.violations), after the session's prefix.
_FIELD = re.compile(r"(?:not sent to the charge point: )?([A-Za-z_][\w.\[\]]*): ")


@dataclass(frozen=True)
class Outcome:
    """An HTTP status and the JSON body saying how a CALL ended."""

    status: int
    body: dict[str, Any]


def not_connected(identity: str) -> Outcome:
    return Outcome(
        404,
        {"error": f"charge point {identity!r} is not connected", "code": "Offline"},
    )


def outcome_of(envelope: Envelope, action: str) -> Outcome:
    """The HTTP answer of the envelope that ended an API CALL."""
    message = envelope.message
    head = {"identity": envelope.charge_point, "unique_id": message.unique_id, "action": action}
    if isinstance(message, CallResult):
        return Outcome(200, {**head, "type": "CALLRESULT", "payload": message.payload})
    assert isinstance(message, CallError | CallResultError)
    if envelope.origin == ORIGIN_GATEWAY:
        body: dict[str, Any] = {
            **head,
            "error": message.error_description,
            "code": message.error_code,
        }
        found = _FIELD.match(message.error_description)
        if message.error_code == GatewayError.INVALID.value and found:
            body["field"] = found.group(1)
        return Outcome(STATUS_OF.get(message.error_code, 502), body)
    return Outcome(
        200,
        {
            **head,
            "type": "CALLERROR",
            "error_code": message.error_code,
            "error_description": message.error_description,
            "error_details": message.error_details,
        },
    )


class Calls:
    """CALLs of the admin API waiting for their answers."""

    def __init__(self, router: Router, clock: IReactorTime) -> None:
        self._router = router
        self._clock = clock
        #: (identity, UniqueId) -> (Action, the request's Deferred, its timer,
        #: the answer's Deferred from the router)
        self._waiting: dict[
            tuple[str, str], tuple[str, Deferred[Outcome], IDelayedCall, Deferred[Envelope]]
        ] = {}

    def call(
        self, identity: str, action: str, payload: dict[str, Any], timeout: float
    ) -> Deferred[Outcome]:
        """Send ``action`` to ``identity``; fires with its outcome, by ``timeout`` at the latest."""
        session = self._router.directory.get(identity)
        if session is None or not session.connected:
            return succeed(not_connected(identity))
        unique_id = f"api-{uuid.uuid4().hex[:28]}"  # OCPP-J: at most 36 characters
        key = (identity, unique_id)
        d: Deferred[Outcome] = Deferred()
        timer = self._clock.callLater(timeout, self._timed_out, key, timeout)
        answer = self._router.awaited.answer_to(identity, unique_id)
        self._waiting[key] = (action, d, timer, answer)
        answer.addCallback(self._answered, key).addErrback(_waits_no_more)
        # The same path as a downstream MQTT CALL (ocppgw.router.routing):
        # validation, the queue, the answer's matching are the session's.
        envelope = Envelope(
            Call(unique_id, action, payload), version=session.version, charge_point=identity
        )
        session.envelope_received(envelope)
        return d

    def call_many(
        self, identities: list[str], action: str, payload: dict[str, Any], timeout: float
    ) -> Deferred[dict[str, Outcome]]:
        """Send ``action`` to each of ``identities``; each one's outcome, by identity."""
        ids = list(dict.fromkeys(identities))
        calls = [self.call(i, action, payload, timeout) for i in ids]

        def collect(results: list[tuple[bool, Any]]) -> dict[str, Outcome]:
            return {i: r for i, (ok, r) in zip(ids, results, strict=True) if ok}

        return DeferredList(calls, consumeErrors=True).addCallback(collect)

    def _answered(self, envelope: Envelope, key: tuple[str, str]) -> None:
        waiting = self._waiting.pop(key, None)
        if waiting is None:
            return
        action, d, timer, _ = waiting
        if timer.active():
            timer.cancel()
        d.callback(outcome_of(envelope, action))

    def _timed_out(self, key: tuple[str, str], timeout: float) -> None:
        waiting = self._waiting.pop(key, None)
        if waiting is None:
            return
        action, d, _, answer = waiting
        answer.cancel()
        d.callback(
            Outcome(
                504,
                {
                    "identity": key[0],
                    "unique_id": key[1],
                    "action": action,
                    "error": f"no answer within {timeout:g} s",
                    "code": GatewayError.TIMEOUT.value,
                },
            )
        )

    def stop(self) -> None:
        """Answer every waiting request: the gateway is shutting down."""
        for key in list(self._waiting):
            _, d, timer, answer = self._waiting.pop(key)
            if timer.active():
                timer.cancel()
            answer.cancel()
            d.callback(Outcome(503, {"error": "gateway shutting down", "code": "Shutdown"}))


def _waits_no_more(failure: Failure) -> None:
    """The answer's Deferred was cancelled: the request was answered otherwise."""
    failure.trap(CancelledError)
