# -*- test-case-name: tests.unit.session.test_exactly_once -*-
"""
The backend CALLs a session answered lately, so that a copy of one is known.

MQTT QoS 1 delivers at least once (MQTT 3.1.1 §4.3.2, MQTT 5 §4.3.2): a
backend CALL comes again after a lost PUBACK or a backend's retry.  A CALL
answered within ``downstream_timeout`` seconds (``[dnstream]
awaiting_timeout``) is remembered with its Action and payload, oldest first;
older ones are dropped when another is added (no timer per id), and at most
:data:`RECENT_MEMORY` are kept (per charge point; the router's memory of
its own ``Offline`` answers holds more).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from twisted.internet.interfaces import IReactorTime

#: At most this many answered backend CALLs are remembered per charge point.
RECENT_MEMORY = 1024

#: A backend CALL's Action and payload.
Known = tuple[str, dict[str, Any] | None]


class RecentCalls:
    """The backend CALLs answered in the last ``window`` seconds, by UniqueId."""

    # Slots, and no dict until the first CALL: one of these per idle charge point.
    __slots__ = ("_calls", "_clock", "_memory", "_window")

    def __init__(self, clock: IReactorTime, window: float, memory: int = RECENT_MEMORY) -> None:
        self._clock = clock
        self._window = window
        self._memory = memory
        #: UniqueId to (when answered, Action, payload), oldest first.
        self._calls: OrderedDict[str, tuple[float, str, dict[str, Any] | None]] | None = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._calls or ())

    def add(self, unique_id: str, action: str, payload: dict[str, Any] | None) -> None:
        """``unique_id`` was answered now; forget what is older than the window."""
        now = self._clock.seconds()
        calls = self._calls
        if calls is None:
            calls = self._calls = OrderedDict()
        calls[unique_id] = (now, action, payload)
        horizon = now - self._window
        # The one just added is never older than the window: the loop ends.
        while len(calls) > self._memory or next(iter(calls.values()))[0] < horizon:
            calls.popitem(last=False)

    def get(self, unique_id: str) -> Known | None:
        """The Action and payload of ``unique_id`` if it was answered within the window."""
        if self._calls is None:
            return None
        answered = self._calls.get(unique_id)
        if answered is None:
            return None
        if answered[0] < self._clock.seconds() - self._window:
            del self._calls[unique_id]  # forgotten: the id may start a new CALL
            return None
        return answered[1], answered[2]

    def adopt(self, older: RecentCalls) -> None:
        """Take ``older``'s CALLs (a replaced connection's), which were answered before these."""
        calls, older._calls = older._calls, None
        if calls is None:
            return
        if self._calls:
            calls.update(self._calls)
        self._calls = calls
