# -*- test-case-name: tests.unit.session.test_flood -*-
"""
How much one charge point may send: a token bucket on the reactor clock
(``[listener:NAME] max_message_rate`` per second, ``max_message_burst`` at
once), and the rule that closes a connection that floods for long.

One charge point must not starve the others (docs/design.md, what users
rely on, 3): what is beyond the bucket is refused before it is parsed for
publishing, and a connection above ten times the rate for ten seconds is
closed with 1008 (RFC 6455 §7.4.1, policy violation).

Two kinds of frames are no flood, and are only looked at once the bucket is
empty (the usual frame pays nothing for them):

- an answer to the gateway's CALL in flight, or to one that timed out (late):
  the gateway sends one CALL at a time (OCPP-J 1.6 §4.1.1, 2.0.1 Part 4
  §4.1.1), so such answers cannot flood; they always pass;
- transaction and security messages (:data:`PRIORITY_ACTIONS`, and 2.x
  TransactionEvent with eventType Ended): a bucket of their own,
  :data:`PRIORITY_FACTOR` times the rate and the burst, so that a charge
  point flooding with MeterValues still closes its transactions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201

if TYPE_CHECKING:  # the configuration reads this module's defaults without Twisted
    from twisted.internet.interfaces import IReactorTime

#: The defaults of ``[listener:NAME] max_message_rate`` and
#: ``max_message_burst``, declared here once (the configuration's key, its
#: model and the session's options use them).
DEFAULT_RATE = 10
DEFAULT_BURST = 50

#: Above this many times the rate, every second ...
FLOOD_FACTOR = 10
#: ... for this many seconds, the connection is closed.
FLOOD_SECONDS = 10

#: Past the bucket, transaction and security messages have a bucket of their
#: own, this many times ``max_message_rate`` and ``max_message_burst``.
PRIORITY_FACTOR = 2

#: The CALLs of that allowance, where the version defines them (1.6: with the
#: Security whitepaper's messages); 2.x TransactionEvent only with eventType
#: Ended (:func:`is_priority`).
PRIORITY_ACTIONS: Mapping[str, frozenset[str]] = {
    OCPP16: frozenset(
        {"StopTransaction", "SecurityEventNotification", "SignedFirmwareStatusNotification"}
    ),
    OCPP201: frozenset({"SecurityEventNotification"}),
    OCPP21: frozenset({"SecurityEventNotification"}),
}


def is_priority(version: str, action: str, payload: dict[str, Any]) -> bool:
    """Whether a CALL of ``action`` has the transaction and security allowance."""
    if action == "TransactionEvent" and version != OCPP16:
        return payload.get("eventType") == "Ended"
    return action in PRIORITY_ACTIONS.get(version, ())


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
        #: The transaction and security messages' bucket, past this one.
        self._priority_tokens = float(PRIORITY_FACTOR * burst)
        self._priority_at = self._at

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

    def answer(self) -> None:
        """The frame :meth:`admit` just refused answers the gateway's CALL: it passes."""
        self.refused -= 1

    def admit_priority(self) -> bool:
        """
        The frame :meth:`admit` just refused is a transaction or security
        message: True (and not counted as refused) when it is within their
        own bucket, PRIORITY_FACTOR times the rate and the burst.
        """
        now = self._clock.seconds()
        self._priority_tokens = min(
            PRIORITY_FACTOR * self.burst,
            self._priority_tokens + (now - self._priority_at) * PRIORITY_FACTOR * self.rate,
        )
        self._priority_at = now
        if self._priority_tokens >= 1:
            self._priority_tokens -= 1
            self.refused -= 1
            return True
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
