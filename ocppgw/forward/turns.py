# -*- test-case-name: tests.unit.forward.test_turns -*-
"""
Whose CALL is in flight towards the charge point: the central system's or
an MQTT backend's (OCPP-J 1.6 §4.1.1, 2.0.1 Part 4 §4.1.1: one CALL in
flight at a time, whoever sent it).

- A CALL from either side while the other's is in flight waits, in order of
  arrival, and goes when the charge point answers it (or after
  ``awaiting_timeout``, when its sender has given up on it too).
- The charge point's answer (CALLRESULT, CALLERROR) to the CALL in flight
  goes to whoever sent that CALL: the central system never sees the
  answer to a backend's CALL, a backend never the central system's.  Since
  only one CALL is in flight, the UniqueIds of the two senders never
  collide; nothing is renamed, every frame goes as it came.
- Everything else (the central system's answers to the charge point's
  CALLs) goes at once.

The backend's side is MQTT mode's :class:`~ocppgw.session.rules.Session`,
whose connection this is (:class:`Turns` is its
``IChargePointConnection``): its queue, timeouts, copies and error
envelopes apply unchanged.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from ocppgw.interfaces import IChargePointConnection

#: The type and id a frame starts with: ``[2,"id"`` (OCPP-J 1.6 §4.1.3).
_HEAD = re.compile(r'\A[ \t\n\r]*\[[ \t\n\r]*([2-6])[ \t\n\r]*,[ \t\n\r]*"([^"\\]{1,36})"')

#: Who sent a CALL towards the charge point.
CENTRAL = "CSMS"
BACKEND = "Backend"


def head(text: str) -> tuple[int, str] | None:
    """A frame's MessageTypeId and UniqueId, read without decoding the rest; None if unreadable."""
    found = _HEAD.match(text)
    return None if found is None else (int(found.group(1)), found.group(2))


@implementer(IChargePointConnection)
class Turns:
    """The CALLs towards one charge point, one in flight, and where its answers go."""

    def __init__(
        self,
        connection: IChargePointConnection,
        clock: IReactorTime,
        timeout: float,
    ) -> None:
        self._connection = connection
        self._clock = clock
        self._timeout = timeout
        #: ``(text, who, at)``: a frame of ``who``, received at ``at``, went to
        #: the charge point (the tap's and the metrics').
        self.on_sent: Callable[[str, str, float], None] = lambda text, who, at: None
        self.peer: str = getattr(connection, "peer", "") or ""
        #: (who, UniqueId) of the CALL in flight towards the charge point.
        self.in_flight: tuple[str, str] | None = None
        self._waiting: deque[tuple[str, str, str, float]] = deque()
        self._timer: IDelayedCall | None = None
        #: The relay's connection states, for the admin API (its session's connection is this).
        self.state: Callable[[], dict[str, object]] = lambda: {}

    # --- the senders ---

    def from_central(self, text: str) -> None:
        """A frame of the central system's for the charge point."""
        at = self._clock.seconds()
        found = head(text)
        if found is not None and found[0] == 2:
            self._call(CENTRAL, found[1], text, at)
        else:
            self._connection.send_frame(text)
            self.on_sent(text, CENTRAL, at)

    def send_frame(self, text: str) -> None:
        """A frame of the backend's session for the charge point (IChargePointConnection)."""
        at = self._clock.seconds()
        found = head(text)
        if found is not None and found[0] == 2:
            if self.in_flight is not None and self.in_flight[0] == BACKEND:
                # The session sends its next CALL only when the last one is
                # done (answered, timed out): it is not in flight any more.
                self._done()
            self._call(BACKEND, found[1], text, at)
        else:
            self._connection.send_frame(text)
            self.on_sent(text, BACKEND, at)

    def from_other(self, who: str, unique_id: str, text: str) -> None:
        """A CALL of another sender (a mirror's allowed Action): its turn like the others'."""
        self._call(who, unique_id, text, self._clock.seconds())

    def close(self, code: int, reason: str) -> None:
        """The backend's session closes the charge point (replaced, moved, kicked)."""
        self._connection.close(code, reason)

    # --- the charge point ---

    def answer_of(self, text: str) -> str | None:
        """
        Whose CALL the charge point's frame ``text`` answers when it is the
        answer to the CALL in flight (``BACKEND`` or ``CENTRAL``; that CALL
        is done, and the next waits for :meth:`resume`, so that the answer
        is relayed and tapped first), else None.
        """
        flight = self.in_flight
        if flight is None:
            return None
        found = head(text)
        if found is None or found[0] not in (3, 4) or found[1] != flight[1]:
            return None
        self.in_flight = None
        self._stop_timer()
        return flight[0]

    def resume(self) -> None:
        """The next waiting CALL goes, if none is in flight."""
        if self.in_flight is None and self._waiting:
            self._call(*self._waiting.popleft())

    def central_gone(self) -> None:
        """The central system's connection is gone: its CALLs waiting or in flight are dropped."""
        self._waiting = deque(w for w in self._waiting if w[0] != CENTRAL)
        if self.in_flight is not None and self.in_flight[0] == CENTRAL:
            self._done()

    def stop(self) -> None:
        """The connection is gone: nothing more is sent, no timer left."""
        self._waiting.clear()
        self.in_flight = None
        self._stop_timer()

    # --- turns ---

    def _call(self, who: str, unique_id: str, text: str, at: float) -> None:
        if self.in_flight is not None:
            self._waiting.append((who, unique_id, text, at))
            return
        self.in_flight = (who, unique_id)
        self._timer = self._clock.callLater(self._timeout, self._expired)
        self._connection.send_frame(text)
        self.on_sent(text, who, at)

    def _expired(self) -> None:
        self._timer = None
        self._done()

    def _done(self) -> None:
        self.in_flight = None
        self._stop_timer()
        self.resume()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
