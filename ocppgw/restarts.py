# -*- test-case-name: tests.unit.test_restarts -*-
"""
Starting a child process again after it died, with the delay before it: the
one restart loop of the embedded broker (``mqtt/broker.py``) and the
workers' supervisor (``workers/``).

A child that dies soon after it started is started again after a delay that
doubles each time, up to a most; a child that ran for a while before it died
(a healthy run) is started again after the first delay, as
``twisted.runner.procmon.ProcessMonitor`` does.  Without that reset, a
broker or worker that crashed a few times in its first minute would wait the
most (30 s) after every later crash, months later, however long it had run.

Stage: below every other (it needs only a clock).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Restarts:
    """The restarts of one child process: when, and the one that waits."""

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
        self._waiting: IDelayedCall | None = None

    def started(self) -> None:
        """The child was started now."""
        self._since = self._clock.seconds()

    def ended(self, start: Callable[[], object]) -> float:
        """
        The child ended now: ``start`` it again after a delay, which this
        returns (``first`` after a healthy run, else twice the last, up to
        ``most``).
        """
        ran = None if self._since is None else self._clock.seconds() - self._since
        self._since = None
        if ran is not None and ran >= self._healthy:
            self._delay = self._first
        delay = self._delay
        self._delay = min(delay * 2, self._most)
        self.hold()
        self._waiting = self._clock.callLater(delay, self._start, start)
        return delay

    def _start(self, start: Callable[[], object]) -> None:
        self._waiting = None
        start()

    def hold(self) -> None:
        """Start nothing again: a restart that waits is dropped (the parent stops)."""
        waiting, self._waiting = self._waiting, None
        if waiting is not None and waiting.active():
            waiting.cancel()
