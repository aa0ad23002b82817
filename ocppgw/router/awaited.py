# -*- test-case-name: tests.unit.router.test_awaited -*-
"""
Answers that a part of this process waits for: the admin API's CALLs to
charge points (:mod:`ocppgw.admin.calls`).

Such a CALL takes the path of a downstream MQTT CALL, and its answer, the
charge point's or the gateway's error envelope (Timeout, QueueFull,
Disconnected, ...), is published like any other.  Whoever waits for it asks
:meth:`Awaited.answer_to` before handing the CALL to the session, and gets
the envelope as the router publishes it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import CallError, CallResult, CallResultError


class Awaited:
    """The answers waited for, by charge point and UniqueId."""

    def __init__(self) -> None:
        #: (identity, UniqueId) -> the Deferred of its answer.  The router
        #: asks :meth:`published` only while this holds any.
        self.waiting: dict[tuple[str, str], Deferred[Envelope]] = {}

    def answer_to(self, identity: str, unique_id: str) -> Deferred[Envelope]:
        """
        Fires with the answer to the CALL ``unique_id`` of ``identity`` when
        it is published.  Cancel it to wait no more.
        """
        key = (identity, unique_id)

        def cancel(d: Deferred[Envelope]) -> None:
            self.waiting.pop(key, None)

        d: Deferred[Envelope] = Deferred(cancel)
        self.waiting[key] = d
        return d

    def published(self, envelope: Envelope) -> None:
        """The router publishes ``envelope``: if it answers a waited-for CALL, hand it over."""
        message = envelope.message
        if isinstance(message, CallResult | CallError | CallResultError):
            d = self.waiting.pop((envelope.charge_point or "", message.unique_id), None)
            if d is not None:
                d.callback(envelope)
