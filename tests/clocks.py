"""Test cases driven by a ``task.Clock``, which leave no timer behind."""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppgw.router.routing import Router
from ocppgw.session.rules import Phase, Session

C = TypeVar("C", bound=Clock)


class Clocks:
    """
    The clocks one test drives (``task.Clock`` or ``MemoryReactorClock``):
    after the test, :meth:`left` must be empty. :class:`ClockTestCase` and the
    ``clocks`` fixture of tests/unit/conftest.py check it.
    """

    def __init__(self) -> None:
        self._clocks: list[Clock] = []

    def new(self) -> Clock:
        """A fresh ``task.Clock``, checked after the test."""
        return self.add(Clock())

    def add(self, clock: C) -> C:
        """Check ``clock`` (e.g. a ``MemoryReactorClock``) after the test too."""
        if clock not in self._clocks:
            self._clocks.append(clock)
        return clock

    def left(self) -> list[IDelayedCall]:
        """The timers still active on any of the clocks."""
        return [call for clock in self._clocks for call in clock.getDelayedCalls()
                if call.active()]


class ClockTestCase(SynchronousTestCase):
    """
    A test on ``self.clock`` (a ``task.Clock``) and on any clock it makes with
    :meth:`new_clock` or registers with ``self.clocks.add``: its cleanup
    asserts that no timer is left on any of them, so a test that forgets one
    (a session never expired, a retry never cancelled) fails instead of hiding
    a leak. Cleanups a test adds run before that check.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clocks = Clocks()
        self.clock = self.clocks.new()
        self.addCleanup(self.assertNoTimerLeft)

    def new_clock(self) -> Clock:
        """Another ``task.Clock`` for a test that needs several, checked like ``self.clock``."""
        return self.clocks.new()

    def assertNoTimerLeft(self) -> None:
        self.assertEqual(self.clocks.left(), [], "timers left behind by the test")


def end_session(session: Session) -> None:
    """End ``session`` as the gateway ends one: its connection is lost, its grace runs out."""
    if session.phase in (Phase.OPEN, Phase.CLOSING):
        session.connection_lost()
    if session.phase is Phase.GRACE:
        session.expire()


def end_router(router: Router) -> None:
    """Stop ``router`` as the gateway stops: its sessions end, then it leaves."""
    for session in router.directory.all():
        end_session(session)
    router.leave()


#: Sessions a test module's ``make()`` built for the running test, with their clocks.
MADE: list[tuple[Session, Clock]] = []


def made(session: Session, clock: Clock) -> Session:
    """Register ``session`` (on ``clock``) to be ended, and checked, after the test."""
    MADE.append((session, clock))
    return session


class SessionsTestCase(ClockTestCase):
    """
    Tests on sessions a module's ``make()`` built (each on a ``task.Clock`` of
    its own): after the test, each ends as the gateway ends one, and then no
    timer may be left on its clock.
    """

    def setUp(self) -> None:
        super().setUp()
        MADE.clear()
        self.addCleanup(self._ended)

    def _ended(self) -> None:
        for session, clock in MADE:
            end_session(session)
            self.clocks.add(clock)
