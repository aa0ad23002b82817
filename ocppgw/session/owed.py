# -*- test-case-name: tests.unit.session.test_owed,tests.integration.test_edges_closing -*-
"""
Error envelopes the gateway owes the backend: the ones whose publish failed
(the MQTT buffer full, the broker gone).  Logs are not a delivery channel, so
they are kept and published again every :data:`OWED_RETRY` seconds until the
broker takes them, at most :data:`OWED_MEMORY` at a time per owner (a session,
or the router for charge points it has no session of).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.ocpp.envelope import Envelope

_log = Logger()

#: Error envelopes waiting for room in the MQTT buffer, per owner, and how
#: often publishing them is tried again (seconds).
OWED_MEMORY = 256
OWED_RETRY = 1.0


class Owed:
    """The error envelopes one owner could not publish yet."""

    # Slots, and no deque (624 bytes) until the first: one of these per idle charge point.
    __slots__ = ("_clock", "_envelopes", "_owner", "_publish", "_timer")

    def __init__(
        self, clock: IReactorTime, publish: Callable[[Envelope], Deferred[None]], owner: str
    ) -> None:
        self._clock = clock
        self._publish = publish
        self._owner = owner
        self._envelopes: deque[Envelope] | None = None
        self._timer: IDelayedCall | None = None

    def __len__(self) -> int:
        return 0 if self._envelopes is None else len(self._envelopes)

    def owe(self, envelope: Envelope) -> None:
        """Publish ``envelope`` again once the MQTT buffer has room."""
        envelopes = self._envelopes
        if envelopes is None:
            envelopes = self._envelopes = deque()
        envelopes.append(envelope)
        while len(envelopes) > OWED_MEMORY:
            lost = envelopes.popleft().message
            _log.error(
                "{owner}: more than {n} error envelopes wait for the broker; {id} dropped",
                owner=self._owner,
                n=OWED_MEMORY,
                id=lost.unique_id,
            )
        if self._timer is None:
            self._timer = self._clock.callLater(OWED_RETRY, self._pay)

    def publish(self, envelope: Envelope) -> None:
        """Publish ``envelope`` now, and owe it if that fails."""
        self._publish(envelope).addErrback(self._failed, envelope)

    def _pay(self) -> None:
        self._timer = None
        owed, self._envelopes = self._envelopes, None
        for envelope in owed or ():
            self.publish(envelope)

    def _failed(self, failure: Failure, envelope: Envelope) -> None:
        self.owe(envelope)
