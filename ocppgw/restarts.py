# -*- test-case-name: tests.unit.test_restarts -*-
"""
How long to wait before starting a child process again: the one policy of
the embedded broker (``mqtt/broker.py``) and the workers' supervisor
(``workers/``).

A child that dies soon after it started is started again after a delay that
doubles each time, up to a most; a child that ran for a while before it died
(a healthy run) is started again after the first delay, as
``twisted.runner.procmon.ProcessMonitor`` does.  Without that reset, a
broker or worker that crashed a few times in its first minute would wait the
most (30 s) after every later crash, months later, however long it had run.

Stage: below every other (it needs only a clock).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class RestartDelay:
    """The delays before starting one child process again."""

    def __init__(
        self, clock: IReactorTime, first: float, most: float = 30.0, healthy: float = 60.0
    ) -> None:
        self._clock = clock
        self._first = first
        self._most = most
        #: A run at least this long (seconds) resets the delay to ``first``.
        self._healthy = healthy
        self._delay = first
        self._since: float | None = None

    def started(self) -> None:
        """The child was started now."""
        self._since = self._clock.seconds()

    def ended(self) -> float:
        """
        The child ended now: the seconds to wait before starting it again
        (``first`` after a healthy run, else twice the last, up to ``most``).
        """
        ran = None if self._since is None else self._clock.seconds() - self._since
        self._since = None
        if ran is not None and ran >= self._healthy:
            self._delay = self._first
        delay = self._delay
        self._delay = min(delay * 2, self._most)
        return delay
