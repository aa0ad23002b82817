# -*- test-case-name: tests.unit.session.test_flood -*-
"""
How much one charge point may send: a token bucket on the reactor clock
(``[listener:NAME] max_message_rate`` per second, ``max_message_burst`` at
once), and the rule that closes a connection that floods for long.

One charge point must not starve the others (docs/design.md, what users
rely on, 3): what is beyond the bucket is refused before it is parsed for
publishing, and a connection above ten times the rate for ten seconds is
closed with 1008 (RFC 6455 §7.4.1, policy violation).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

#: Above this many times the rate, every second ...
FLOOD_FACTOR = 10
#: ... for this many seconds, the connection is closed.
FLOOD_SECONDS = 10


class MessageRate:
    """The token bucket of one connection, and its flood detector."""

    def __init__(self, clock: IReactorTime, rate: int, burst: int) -> None:
        self._clock = clock
        #: Messages per second; 0: no limit.
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = clock.seconds()
        #: Frames refused so far (CALLs answered, others dropped).
        self.refused = 0
        self._second = int(self._at)
        self._in_second = 0
        #: Since when every whole second held more than FLOOD_FACTOR x rate.
        self._flooding_since: int | None = None

    def admit(self) -> bool:
        """One frame arrived: True when it is within the limit."""
        if self.rate <= 0:
            return True
        now = self._clock.seconds()
        self._count(now)
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.refused += 1
        return False

    def _count(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            hot = self._in_second > FLOOD_FACTOR * self.rate and second == self._second + 1
            if not hot:
                self._flooding_since = None
            elif self._flooding_since is None:
                self._flooding_since = self._second
            self._second, self._in_second = second, 0
        self._in_second += 1

    def flooding(self) -> bool:
        """Whether the connection stayed above FLOOD_FACTOR x rate for FLOOD_SECONDS."""
        if self.rate <= 0 or self._flooding_since is None:
            return False
        now = self._clock.seconds()
        hot_now = self._in_second > FLOOD_FACTOR * self.rate
        return hot_now and now - self._flooding_since >= FLOOD_SECONDS

    def describe(self) -> str:
        """The limit, as the CALLERROR names it."""
        return (
            f"message rate limit exceeded (max_message_rate = {self.rate}/s, "
            f"max_message_burst = {self.burst}); not forwarded"
        )
