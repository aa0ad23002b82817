# -*- test-case-name: tests.unit.forward.test_hold -*-
"""
``on_csms_down = hold``: the central system's connection gone, the gateway
keeps the charge point and opens the central system's connection again,
waiting 1 s before the first attempt and doubling the wait after each
failed one, up to 30 s (back to 1 s after a success).  Meanwhile the relay
answers the charge point's CALLs with a CALLERROR (:func:`held_off`), and
the tap carries each with that CALLERROR as its verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from ocppgw.ocpp.messages import CallError, encode_frame
from ocppgw.ocpp.versions import ErrorKind, error_code

FIRST_WAIT = 1.0
LONGEST_WAIT = 30.0


def held_off(version: str, unique_id: str) -> tuple[str, dict[str, str]]:
    """The CALLERROR a CALL gets while the central system is away, and its verdict."""
    code = error_code(version, ErrorKind.INTERNAL)
    why = "central system unreachable; the gateway is reconnecting"
    return encode_frame(CallError(unique_id, code, why, {})), {
        "ErrorCode": code,
        "ErrorDescription": why,
    }


class Reconnect:
    """The attempts to open a charge point's central system connection again."""

    def __init__(
        self,
        clock: IReactorTime,
        reopen: Callable[[], Deferred[Any]],
        linked: Callable[[Any], None],
        first_now: bool = False,
    ) -> None:
        """
        ``reopen()``: a Deferred of the new link; ``linked(link)``: what to do
        with it; ``first_now``: the first attempt at once (a mirror's opening).
        """
        self._clock = clock
        self._reopen = reopen
        self._linked = linked
        self._wait = 0.0 if first_now else FIRST_WAIT
        self._timer: IDelayedCall | None = None
        self._trying: Deferred[Any] | None = None
        self.stopped = False
        #: Attempts that failed since the connection was lost.
        self.failures = 0

    @property
    def active(self) -> bool:
        """Whether an attempt is waiting or under way."""
        return self._timer is not None or self._trying is not None

    def start(self) -> None:
        """The connection is gone: the next attempt after the current wait."""
        if not self.stopped and not self.active:
            self._timer = self._clock.callLater(self._wait, self._attempt)

    def stop(self) -> None:
        """The charge point left: no more attempts (one under way closes what it opens)."""
        self.stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _attempt(self) -> None:
        self._timer = None
        self._trying = d = self._reopen()
        d.addCallbacks(self._opened, self._failed)

    def _opened(self, link: Any) -> None:
        self._trying = None
        if self.stopped:
            # A relay's link, or a mirror's bare connection.
            close = getattr(link, "abandon", None)
            if close is not None:
                close()
            else:
                link.close(1001, "charge point left")
            return
        self._wait = FIRST_WAIT
        self.failures = 0
        self._linked(link)

    def _failed(self, failure: Failure) -> None:
        self._trying = None
        self.failures += 1
        self._wait = min(max(self._wait * 2, FIRST_WAIT), LONGEST_WAIT)
        self.start()
