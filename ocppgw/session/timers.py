# -*- test-case-name: tests.unit.session.test_session -*-
"""
A CALL waiting for its answer (:class:`Pending`) and what times it out: a
DelayedCall, or the one reused :class:`SharedTimer` of a session's upstream
CALLs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Timer(Protocol):
    """What a pending exchange's timer offers: a DelayedCall or a :class:`SharedTimer`."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


@dataclass
class Pending:
    """A CALL waiting for its answer, and the timer that gives up on it."""

    unique_id: str
    action: str
    timer: Timer | None
    #: A backend CALL's payload, to tell a copy of it from another CALL.
    payload: dict[str, Any] | None = None


def cancel(timer: Timer | None) -> None:
    """Cancel ``timer`` unless it already ran or was cancelled."""
    if timer is not None and timer.active():
        timer.cancel()


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
