# -*- test-case-name: tests.unit.session.test_session -*-
"""The one reused DelayedCall that times a session's upstream CALLs."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class SharedTimer:
    """
    The timeout of the one CALL a session waits on, one DelayedCall reused.

    A timer per CALL made, sorted and cancelled a DelayedCall for every round
    trip.  Here the next CALL moves the same
    DelayedCall later with ``reset()``, which Twisted does in O(1) and sorts
    only when the old time comes; cancelling only forgets the CALL, and a
    DelayedCall that fires with no CALL does nothing.  The timeout fires at
    the same time as its own timer would.  :meth:`stop` cancels the
    DelayedCall itself (the connection is gone).
    """

    def __init__(self, clock: IReactorTime, fire: Callable[[str], object]) -> None:
        self._clock = clock
        self._fire = fire
        self._call: IDelayedCall | None = None
        #: The CALL it times, by UniqueId; None: none.
        self.target: str | None = None

    def start(self, seconds: float, unique_id: str) -> None:
        """Time ``unique_id`` out in ``seconds`` (no other CALL is timed by it)."""
        self.target = unique_id
        call = self._call
        if call is not None and call.active():
            call.reset(seconds)
        else:
            self._call = self._clock.callLater(seconds, self._fired)

    def _fired(self) -> None:
        target, self.target, self._call = self.target, None, None
        if target is not None:
            self._fire(target)

    def active(self) -> bool:
        return self.target is not None

    def cancel(self) -> None:
        self.target = None

    def stop(self) -> None:
        self.target = None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
