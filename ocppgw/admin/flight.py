# -*- test-case-name: tests.unit.admin.test_flight -*-
"""
The flight recorder (issue 21): each charge point's recent messages, as they
were on the wire, for ``GET /api/v1/chargepoints/{id}/messages``.

Per frame it stores little: the time, the direction and the text (after
``[recorder] redact``), the topic for MQTT messages and, for those, the
type, UniqueId and Action the router already knows.  Everything else (the
fields of a WebSocket frame, the Action of an answer, its latency, the
verdict) is worked out when the history is read (:func:`records`).

Bounds: ``per_station`` frames per charge point (the oldest go first); all
histories together within ``max_memory`` (an estimate of their size: the
text and a fixed overhead per frame and per history), the oldest frames of the largest
histories dropped first, each counted in ``ocppgw_recorder_dropped_total``,
and what they held given back to the system (:mod:`ocppgw.admin.release`).
A frame that takes the total over ``max_memory`` drops at once what brings it
back within, and the frames after it a few more each (:data:`STEP`) until
the total is down to 90%: the drops that make room for many frames are spread
over them, not done in one piece that holds the reactor (a pass of some
16,000 frames held it 70-110 ms every 4 s at 1,000 CALLs/s once the budget
was full, docs/performance.md);
a charge point that disconnected keeps its history ``keep`` seconds from
the disconnect (forgotten on the next event after that, so no timer runs).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ocppgw.admin.redact import Redactor

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from ocppgw.config.model import RecorderConfig
    from ocppgw.ocpp.messages import Message

#: Directions, as stored (small ints) and as the API names them.
FROM_CHARGE_POINT, TO_CHARGE_POINT, TO_BACKEND, FROM_BACKEND = range(4)
DIRECTIONS = ("FromChargePoint", "ToChargePoint", "ToBackend", "FromBackend")
#: What one stored frame costs beyond its text: the tuple, the str header,
#: the time and the list's slot (CPython 3.11+, 64-bit), rounded up.
OVERHEAD = 200
#: What one charge point's history costs empty: its object, list, key and
#: dict slot (some 930 bytes with a deque, measured with tracemalloc; less
#: with the list, and kept: an estimate on the safe side).
HISTORY_OVERHEAD = 1000
#: At most this often (seconds) is freed memory given back to the system,
#: and at most this share of the time: after a release that took t seconds,
#: the next waits t / RELEASE_SHARE.
RELEASE_EVERY = 1.0
RELEASE_SHARE = 0.01
#: While a pass toward 90% of ``max_memory`` is on, each frame added drops
#: at most this many frames beyond what brings the total within the budget.
STEP = 8

#: One stored frame: (time in ms, direction, text or payload bytes, topic,
#: MessageTypeId, UniqueId, Action or, of an error, its code and description);
#: the last three only for MQTT messages.
Frame = tuple[
    int,
    int,
    "str | bytes | None",
    "str | None",
    "int | None",
    "str | None",
    "str | tuple[str, str] | None",
]


def cost(data: str | bytes | None) -> int:
    """The estimated bytes one frame of ``data`` holds."""
    if data is None:
        return OVERHEAD
    if isinstance(data, bytes) or data.isascii():
        return OVERHEAD + len(data)
    return OVERHEAD + 4 * len(data)


class History:
    """One charge point's frames, oldest first, and what they cost."""

    __slots__ = ("bytes", "frames", "gone_at")

    def __init__(self) -> None:
        # A list until it is full (a deque is 624 bytes from its first frame,
        # and most charge points have a few), then a deque: the oldest frame
        # goes with each new one, and a list would move them all.
        self.frames: list[Frame] | deque[Frame] = []
        self.bytes = 0
        #: When its charge point disconnected (seconds); None: connected.
        self.gone_at: float | None = None

    def drop_oldest(self) -> Frame:
        """Take the oldest frame out (the caller counts its cost)."""
        frames = self.frames
        if isinstance(frames, list):
            return frames.pop(0)
        return frames.popleft()


class FlightRecorder:
    """Every charge point's history, within the bounds of ``[recorder]``."""

    def __init__(
        self,
        config: RecorderConfig,
        clock: IReactorTime,
        release: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        #: Gives the heap's free pages back after drops (:mod:`ocppgw.admin.release`).
        self._release = release
        #: Bytes dropped since memory was last given back; when the next may be.
        self._freed = 0
        self._release_after = float("-inf")
        self.histories: dict[str, History] = {}
        #: The pass toward 90% of max_memory under way: (-bytes, identity) of
        #: the histories as they were when it began, the largest first; None:
        #: no pass is on.
        self._largest: list[tuple[int, str]] | None = None
        #: Disconnected charge points, by disconnect, the earliest first.
        self._gone: OrderedDict[str, float] = OrderedDict()
        self.redact = Redactor(config.redact)
        self.bytes = 0
        self.records = 0
        self.dropped = 0
        #: identity -> the callables told of each new frame (``follow=true``).
        self._followers: dict[str, list[Callable[[History], None]]] = {}

    @property
    def on(self) -> bool:
        return self.config.per_station > 0

    # --- what the gateway reports (through the Recorder) ---

    def frame(self, identity: str, inbound: bool, text: str) -> None:
        """A WebSocket frame from (``inbound``) or to the charge point."""
        self._add(
            identity,
            (
                int(self._clock.seconds() * 1000),
                FROM_CHARGE_POINT if inbound else TO_CHARGE_POINT,
                self.redact(text),
                None,
                None,
                None,
                None,
            ),
        )

    def relayed(
        self, identity: str, upstream: bool, topic: str, payload: bytes, message: Message | None
    ) -> None:
        """An MQTT message published for (``upstream``) or received for the charge point."""
        data: str | bytes | None
        try:
            data = self.redact(payload.decode("utf-8"))
        except UnicodeDecodeError:
            # A binary payload (protobuf) cannot be redacted as text: with
            # redaction on it is not stored, only its fields.
            data = None if self.redact.paths else payload
        kind = uid = None
        action: str | tuple[str, str] | None = None
        if message is not None:
            kind, uid = int(message.message_type), message.unique_id
            error_code = getattr(message, "error_code", None)
            if error_code is not None:
                action = (error_code, getattr(message, "error_description", ""))
            else:
                action = message.action
        self._add(
            identity,
            (
                int(self._clock.seconds() * 1000),
                TO_BACKEND if upstream else FROM_BACKEND,
                data,
                topic,
                kind,
                uid,
                action,
            ),
        )

    def connected(self, identity: str) -> None:
        history = self.histories.get(identity)
        if history is not None and history.gone_at is not None:
            history.gone_at = None
            self._gone.pop(identity, None)

    def disconnected(self, identity: str) -> None:
        history = self.histories.get(identity)
        if history is not None and history.gone_at is None:
            history.gone_at = self._clock.seconds()
            self._gone[identity] = history.gone_at
        self.expire()

    # --- bounds ---

    def _add(self, identity: str, frame: Frame) -> None:
        limit = self.config.per_station
        if limit <= 0 or not identity:
            return
        history = self.histories.get(identity)
        if history is None:
            history = self.histories[identity] = History()
            self.bytes += HISTORY_OVERHEAD
        # cost(), inline for ASCII text (nearly every frame): this runs for
        # every frame both ways and every MQTT message, the oldest too.
        data = frame[2]
        size = OVERHEAD + len(data) if type(data) is str and data.isascii() else cost(data)
        frames = history.frames
        frames.append(frame)
        history.bytes += size
        self.bytes += size
        self.records += 1
        if len(frames) > limit:
            if isinstance(frames, list):
                frames = history.frames = deque(frames)
            data = frames.popleft()[2]
            size = OVERHEAD + len(data) if type(data) is str and data.isascii() else cost(data)
            history.bytes -= size
            self.bytes -= size
            self.records -= 1
        if self._largest is not None or self.bytes > self.config.max_memory:
            self._shrink()
        if self._followers:
            for told in self._followers.get(identity, ()):
                told(history)

    def follow(self, identity: str, told: Callable[[History], None]) -> Callable[[], None]:
        """
        Call ``told(history)`` after each frame added to ``identity``'s
        history, from now on, whether it is connected yet or not; returns
        what stops it.
        """
        self._followers.setdefault(identity, []).append(told)

        def stop() -> None:
            followers = self._followers.get(identity, [])
            if told in followers:
                followers.remove(told)
            if not followers:
                self._followers.pop(identity, None)

        return stop

    def _shrink(self) -> None:
        """
        Drop the oldest frames of the largest histories (as they were when
        the pass began): all that brings the total within ``max_memory``,
        then at most :data:`STEP` more toward 90% of it (the slack makes one
        pass serve many frames), and a history left empty with them.
        """
        limit = self.config.max_memory
        target = limit * 9 // 10
        largest = self._rank() if self._largest is None else self._largest
        before = self.bytes
        more = STEP
        while self.bytes > target:
            if self.bytes <= limit:
                if not more:
                    break
                more -= 1
            if not largest:
                if self.bytes <= limit:
                    break
                # Over the budget with the pass's histories spent: those
                # begun since count too.
                largest = self._rank()
                if not largest:
                    break
            _, identity = heapq.heappop(largest)
            history = self.histories.get(identity)
            if history is None or not history.frames:
                continue  # forgotten (keep) or emptied since the pass began
            old = history.drop_oldest()
            size = cost(old[2])
            history.bytes -= size
            self.bytes -= size
            self.records -= 1
            self.dropped += 1
            if history.frames:
                heapq.heappush(largest, (-history.bytes, identity))
            else:  # an empty history costs too: made again by its next frame
                del self.histories[identity]
                self._gone.pop(identity, None)
                self.bytes -= HISTORY_OVERHEAD
        if self.bytes <= target or not largest:
            self._largest = None
        self._freed += before - self.bytes
        self._give_back()

    def _rank(self) -> list[tuple[int, str]]:
        """Begin a pass: every history with frames, the largest first (a heap)."""
        largest = self._largest = [
            (-h.bytes, identity) for identity, h in self.histories.items() if h.frames
        ]
        heapq.heapify(largest)
        return largest

    def _give_back(self) -> None:
        """
        Once a quarter of ``max_memory`` was dropped since the last time, give
        the heap's free pages back: at most once a second, and no more than
        1% of the time (it walks the heap, 25-55 ms at 300 MiB).
        """
        now = self._clock.seconds()
        if (
            self._release is not None
            and self._freed >= self.config.max_memory // 4
            and now >= self._release_after
        ):
            self._freed = 0
            took = self._release()
            self._release_after = now + max(RELEASE_EVERY, took / RELEASE_SHARE)

    def expire(self) -> None:
        """Forget the histories of charge points gone longer than ``keep``."""
        deadline = self._clock.seconds() - self.config.keep
        gone = self._gone
        while gone:
            identity, at = next(iter(gone.items()))
            if at > deadline:
                break
            del gone[identity]
            history = self.histories.pop(identity)
            self.bytes -= history.bytes + HISTORY_OVERHEAD
            self.records -= len(history.frames)

    def history(self, identity: str) -> History | None:
        """``identity``'s history, if it is still kept."""
        self.expire()
        return self.histories.get(identity)

    # --- metrics ---

    def collect(self) -> Iterator[Metric]:
        """The recorder's metrics, read at scrape time (a prometheus-client collector)."""
        self.expire()
        yield GaugeMetricFamily(
            "ocppgw_recorder_bytes",
            "Estimated bytes the flight recorder holds, within [recorder] max_memory.",
            value=self.bytes,
        )
        yield GaugeMetricFamily(
            "ocppgw_recorder_records",
            "Frames the flight recorder holds, over all charge points.",
            value=self.records,
        )
        yield CounterMetricFamily(
            "ocppgw_recorder_dropped",
            "Frames dropped to stay within [recorder] max_memory.",
            value=self.dropped,
        )
