"""Test cases driven by a ``task.Clock``, which leave no timer behind."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppgw.session.rules import Phase, Session


class ClockTestCase(SynchronousTestCase):
    """
    A test on ``self.clock`` (a ``task.Clock``): its cleanup asserts that no
    timer is left, so a test that forgets one (a session never expired, a
    retry never cancelled) fails instead of hiding a leak.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        self.addCleanup(self.assertNoTimerLeft)

    def assertNoTimerLeft(self) -> None:
        left = [call for call in self.clock.getDelayedCalls() if call.active()]
        self.assertEqual(left, [], "timers left behind by the test")


def end_session(session: Session) -> None:
    """End ``session`` as the gateway ends one: its connection is lost, its grace runs out."""
    if session.phase in (Phase.OPEN, Phase.CLOSING):
        session.connection_lost()
    if session.phase is Phase.GRACE:
        session.expire()


#: Sessions a test module's ``make()`` built for the running test, with their clocks.
MADE: list[tuple[Session, Clock]] = []


def made(session: Session, clock: Clock) -> Session:
    """Register ``session`` (on ``clock``) to be ended, and checked, after the test."""
    MADE.append((session, clock))
    return session


class SessionsTestCase(SynchronousTestCase):
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
        for session, _ in MADE:
            end_session(session)
        left = [c for _, clock in MADE for c in clock.getDelayedCalls() if c.active()]
        self.assertEqual(left, [], "timers left behind after the sessions ended")
