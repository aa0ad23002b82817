# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_lifecycle -*-
"""
The rules for messages from the backend: each goes to the side it belongs to.

- a CALL to the backend's CALLs (:mod:`ocppgw.session.backend_calls`): the
  queue, copies, QueueFull;
- an answer to the charge point's CALLs
  (:mod:`ocppgw.session.charge_point_calls`): sent only if its CALL waits
  for it (Unmatched otherwise);
- a SEND goes out if the connection is open (Offline otherwise), and a
  CALLRESULTERROR (2.1) is passed on (Unmatched when the charge point is
  gone, in its grace period);
- with validation on, an invalid CALL, SEND or CALLRESULT is never sent:
  the backend gets Invalid;
- what cannot be sent because of the connection's state is answered by
  :meth:`FromBackend.refuse`, on the lifecycle's word
  (:mod:`ocppgw.session.lifecycle`).
"""

from __future__ import annotations

from ocppgw.ocpp.envelope import Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallError, CallResult, Send
from ocppgw.session.backend_calls import BackendCalls
from ocppgw.session.charge_point_calls import ChargePointCalls
from ocppgw.session.checks import downstream_refusal
from ocppgw.session.options import SessionOptions
from ocppgw.session.outbox import Outbox


class FromBackend:
    """What the session does with each message the backend sends its charge point."""

    __slots__ = ("_backend", "_calls", "_options", "_out")

    def __init__(
        self,
        outbox: Outbox,
        calls: ChargePointCalls,
        backend: BackendCalls,
        options: SessionOptions,
    ) -> None:
        self._out = outbox
        self._calls = calls
        self._backend = backend
        self._options = options

    def deliver(self, envelope: Envelope) -> None:
        """Send, queue or answer a backend message, by the OCPP-J rules."""
        message = envelope.message
        out = self._out
        if isinstance(message, Call):
            if message.action == "TriggerMessage":
                # OCPP 1.6 §4.2, 2.0.1 and 2.1 B02.FR.09: what it asks for may be sent.
                self._calls.registration.trigger(message.payload)
            self._backend.offer(envelope, message)
        elif isinstance(message, Send):
            why = downstream_refusal(
                self._options.validate_downstream,
                out.version,
                message.action,
                True,
                message.payload,
            )
            if why is not None:
                out.gateway_error(message.unique_id, GatewayError.INVALID, why, message.action)
            elif not out.send(message):
                out.gateway_error(
                    message.unique_id,
                    GatewayError.OFFLINE,
                    "charge point is not connected",
                    message.action,
                )
        elif isinstance(message, CallResult | CallError):
            self._calls.answer(message)
        elif not out.send(message):
            # CALLRESULTERROR about the charge point's CALLRESULT: passed on,
            # or, with the charge point gone (the grace period), answered as
            # a CALLRESULT for it would be: nothing waits for it there.
            out.unmatched(message.unique_id, message.action)

    def refuse(self, envelope: Envelope, code: GatewayError, why: str) -> None:
        """Answer a backend message that will not be sent with an error envelope."""
        message = envelope.message
        if isinstance(message, Call):
            self._backend.held(message, code, why)
        elif isinstance(message, CallResult | CallError):
            self._calls.refuse(message, code, why)
        else:
            self._out.gateway_error(message.unique_id, code, why, getattr(message, "action", None))
