# -*- test-case-name: tests.unit.listener.test_throttle -*-
"""
Admission control of one ``[listener:NAME]``: handshakes at the rate the
gateway can serve (``max_handshake_rate`` a second, ``max_handshake_burst``
at once), so that a reconnect storm does not starve the charge points
already connected.

A token bucket of ``max_handshake_burst`` tokens, refilled at
``max_handshake_rate`` tokens a second; each connection takes one as it is
accepted.  One that finds no token gets no WebSocket protocol at all: its
request is answered with HTTP 503 (RFC 9110 §15.6.4) and a ``Retry-After``
in whole seconds (§10.2.3) and the connection closed; its identity,
credentials or subprotocol are never looked at, and a refusal costs little
more than the accept (a storm's first wave is mostly refusals).  On a
``tcp:`` listener the port (:mod:`ocppgw.listener.accepting`) hands it to
:class:`Refusal`, which answers on the socket with no Twisted transport; on
a TLS listener (whose TLS handshake, which carries the request, comes
first) and on other endpoints, :class:`Busy` answers on a transport.  A
charge point whose connections come at most at the rate,
``max_handshake_burst`` at once, always finds a token: it never gets a 503.

When a refused charge point is to come back: a second from now, plus the
time the bucket needs to serve the charge points told to come back before
it (each refusal reserves the next token after those promised already), plus
a random share of up to a tenth of that (at most a second): the jitter.
``Retry-After`` counts whole seconds, and the first wave of a storm comes
within a fraction of one: told whole seconds only, its charge points would
come back in clumps of a second's worth, overflowing a small burst.  So the
503 is held for the fraction of a second and ``Retry-After`` gives the whole
seconds: the retries come back spread at the rate.  A reservation is not
held for its charge point: it only shapes when each is told to return.

Time comes from an injected ``IReactorTime``, chance from an injected
``random()``.
"""

from __future__ import annotations

import contextlib
import math
import random
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime, IReadDescriptor
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

#: A request head longer than this is answered at once.
_MAX_HEAD = 65536

#: Reads of a refused connection's unread bytes before its answer, at most.
_DRAINS = 8

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

    def admit(self) -> float | None:
        """
        Take a token for one handshake: None when there was one, else the
        seconds from now when the refused charge point is to come back (at
        least one).
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
        return 1.0 + wait + self._chance() * min(1.0, wait / 10.0)

    def busy(self, back: float, timeout: float) -> Busy:
        """
        The :class:`Busy` protocol that refuses a connection told to come back
        in ``back`` seconds (``timeout``: for its request).
        """
        return Busy(back, self._clock, timeout)


class _Answer:
    """
    The 503 of a connection to come back in ``back`` seconds (at least one)
    and when it is due: the whole seconds are its ``Retry-After``, the
    fraction of a second is held, counted from now on ``clock``.  What
    :class:`Busy` and :class:`Refusal` share: the request head to wait for.
    """

    def __init__(self, back: float, clock: IReactorTime) -> None:
        whole = max(1, math.floor(back))
        self.response = (
            "HTTP/1.1 503 Service Unavailable\r\nServer: ocppgw\r\n"
            f"Retry-After: {whole}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode()
        self._clock = clock
        self._due = clock.seconds() + max(0.0, back - whole)
        #: What came of the request head; None once it is all in.
        self.head: bytes | None = b""

    def took(self, data: bytes) -> bool:
        """
        ``data`` added to the head: True when that completed it (or made it
        longer than is ever read of one).  The whole head is read first: a
        close with unread data would be a reset that may discard the answer
        at the client.
        """
        if self.head is None:
            return False
        self.head += data
        if b"\r\n\r\n" not in self.head and len(self.head) <= _MAX_HEAD:
            return False
        self.head = None
        return True

    def when_due(self, respond: Callable[[], None]) -> IDelayedCall | None:
        """``respond`` now if the hold is over (None), else its timer."""
        hold = self._due - self._clock.seconds()
        if hold > 0:
            return self._clock.callLater(hold, respond)
        respond()
        return None


class Busy(Protocol):
    """
    A connection over the rate, to come back in ``back`` seconds (at least
    one): once its request head is in, and the fraction of a second of
    ``back`` has passed, HTTP 503 with the whole seconds as ``Retry-After``,
    and the connection closed.  A client that sends no whole head within
    ``timeout`` seconds is dropped.
    """

    def __init__(self, back: float, clock: IReactorTime, timeout: float) -> None:
        self._answer = _Answer(back, clock)
        self._clock = clock
        self._timeout = timeout
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._timer = self._clock.callLater(self._timeout, self._drop)

    def dataReceived(self, data: bytes) -> None:
        # Once answered or answering, the rest is ignored until the close.
        if self._answer.took(data):
            self._cancel()
            self._timer = self._answer.when_due(self._respond)

    def _respond(self) -> None:
        self._timer = None
        assert self.transport is not None
        self.transport.write(self._answer.response)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _drop(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


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


@implementer(IReadDescriptor)
class Refusal:
    """
    A connection refused by admission control, to come back in ``back``
    seconds, answered on its socket: its request head read (what is in at
    once, the rest as epoll says it comes, for at most the head timeout;
    then the connection is dropped unanswered), the 503 held for the
    fraction of a second of ``back``, then written, and the socket closed.
    ``done`` is told when it is closed.
    """

    def __init__(
        self,
        reactor: Any,
        conn: socket.socket,
        back: float,
        done: Callable[[Refusal], None],
    ) -> None:
        self._reactor = reactor
        self._conn: socket.socket | None = conn
        self._fd = conn.fileno()
        self._answer = _Answer(back, reactor)
        self._reading = False
        self._timer: IDelayedCall | None = None
        self._done = done

    def start(self, timeout: float) -> None:
        """Read what is in; wait for the rest of the head at most ``timeout`` seconds."""
        self.doRead()
        if self._conn is not None and self._answer.head is not None:
            self._reading = True
            self._reactor.addReader(self)
            self._timer = self._reactor.callLater(timeout, self._close)

    def end(self) -> None:
        """The port stops: answered now if the head is in, else dropped."""
        if self._conn is not None and self._answer.head is None:
            self._respond()
        else:
            self._close()

    # IReadDescriptor

    def fileno(self) -> int:
        return self._fd if self._conn is not None else -1

    def logPrefix(self) -> str:
        return "refused"

    def doRead(self) -> None:
        conn = self._conn
        if conn is None or self._answer.head is None:
            return
        try:
            data = conn.recv(_MAX_HEAD + 1)
        except BlockingIOError:
            return
        except OSError:
            self._close()
            return
        if not data:
            self._close()  # it went before its answer
            return
        if self._answer.took(data):
            self._stop_waiting()
            self._timer = self._answer.when_due(self._respond)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped the socket (an error on it)."""
        self._reading = False
        self._close()

    def _respond(self) -> None:
        """The 503 and the close, after whatever else the client sent."""
        conn = self._conn
        if conn is None:
            return
        self._stop_waiting()  # the hold's timer, when the port's stop answers early
        try:
            for _ in range(_DRAINS):
                if not conn.recv(_MAX_HEAD):
                    break
        except BlockingIOError:
            pass  # nothing more to read
        except OSError:
            self._close()
            return
        with contextlib.suppress(OSError):
            # A new connection's send buffer takes the whole of it.
            conn.send(self._answer.response)
        self._close()

    def _stop_waiting(self) -> None:
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _close(self) -> None:
        if self._conn is None:
            return
        self._stop_waiting()
        conn, self._conn = self._conn, None
        conn.close()
        self._done(self)
