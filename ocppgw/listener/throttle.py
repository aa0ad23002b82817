# -*- test-case-name: tests.unit.listener.test_throttle -*-
"""
Admission control of one ``[listener:NAME]``: handshakes at the rate the
gateway can serve (``max_handshake_rate`` a second, ``max_handshake_burst``
at once), so that a reconnect storm does not starve the charge points
already connected.

A token bucket of ``max_handshake_burst`` tokens, refilled at
``max_handshake_rate`` tokens a second; each handshake takes one.  A
handshake that finds no token is answered with HTTP 503 (RFC 9110 §15.6.4)
and a ``Retry-After`` in whole seconds (§10.2.3), before its identity,
credentials or subprotocol are looked at.  A charge point whose handshakes
come at most at the rate, ``max_handshake_burst`` at once, always finds a
token: it never gets a 503.

The ``Retry-After`` is the time the bucket needs to serve the charge points
told to come back before this one and this one too (each refusal reserves
the next token after those promised already), spread by a random share of
up to a tenth of that wait (at least a second), so that the retries of a
storm come back at the rate instead of all at once.  A reservation is not
held for its charge point: it only shapes when each is told to return.

Time comes from an injected ``IReactorTime``, chance from an injected
``random()``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

#: Floating-point slack: a handshake exactly 1/rate after the last finds its token.
_SLACK = 1e-9


class HandshakeRate:
    """The token bucket of one listener's handshakes."""

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: int,
        chance: Callable[[], float] = random.random,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate > 0 and burst >= 1 required")
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._chance = chance
        self._tokens = float(burst)
        self._stamp = clock.seconds()
        #: When the last token promised to a refused handshake comes.
        self._promised = self._stamp

    def admit(self) -> int | None:
        """
        Take a token for one handshake: None when there was one, else the
        ``Retry-After`` seconds to answer with the 503.
        """
        now = self._clock.seconds()
        tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if tokens >= 1.0 - _SLACK:
            self._tokens = tokens - 1.0
            return None
        self._tokens = tokens
        # The next token not promised yet: after the ones promised, and not
        # before the bucket holds one.
        first = now + (1.0 - tokens) / self._rate
        self._promised = max(self._promised + 1.0 / self._rate, first)
        wait = self._promised - now
        spread = max(1.0, wait / 10.0)
        return max(1, math.ceil(wait + self._chance() * spread - _SLACK))


def handshake_rate(
    rate: int, burst: int, workers: int, clock: IReactorTime
) -> HandshakeRate | None:
    """
    The admission control of a listener of ``max_handshake_rate`` ``rate``
    and ``max_handshake_burst`` ``burst`` in one of ``workers`` processes
    (which share its port, each taking about 1/N of the handshakes, so each
    admits 1/N of the rate and burst); None with a rate of 0 (no limit).
    """
    if rate == 0:
        return None
    share = max(1, workers)
    return HandshakeRate(clock, rate / share, max(1, burst // share))
