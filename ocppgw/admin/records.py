# -*- test-case-name: tests.unit.admin.test_recorder -*-
"""
What the gateway remembers of each charge point for its operators, made from
:class:`~ocppgw.interfaces.IGatewayEvents`: counters, the last connection
events, when it was last heard from; and the metrics and log lines of the
same events.

A :class:`Recorder` is built for every gateway, with or without the admin
endpoint: the log lines of connects, disconnects, takeovers and gateway
errors are its too.  Charge points that left are remembered (with their
history) up to :data:`MAX_GONE`, the oldest forgotten first.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocppgw.admin.flight import FlightRecorder
from ocppgw.admin.metrics import Metrics
from ocppgw.interfaces import IGatewayEvents
from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, Envelope
from ocppgw.ocpp.messages import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    Message,
    MessageType,
    Send,
)

_log = Logger()

#: Connection events kept per charge point (issue: the last 20).
MAX_EVENTS = 20
#: Charge points that left and are still remembered.
MAX_GONE = 10_000
#: Distinct action names, and distinct error codes, that the metrics and the
#: records name; the rest are counted as :data:`OTHER`.  OCPP 2.1 has 94
#: actions and OCPP-J 16 error codes, so real traffic never reaches it; a
#: charge point inventing names would otherwise make a series (and a record
#: entry) of each.
MAX_NAMES = 256
OTHER = "(other)"
#: Exchanges timed per charge point and direction; OCPP-J allows one in
#: flight each way (1.6 §4.1.1), non-strict peers a few more.
MAX_TIMED = 64


@dataclass
class Record:
    """One charge point, as the admin API shows it."""

    identity: str
    version: str
    listener: str
    profile: int
    peer: str
    connected_since: float
    connected: bool = True
    last_message_at: float | None = None
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    #: (direction, type, action) -> count.
    by_type: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: OCPP and gateway error codes -> count.
    errors: Counter[str] = field(default_factory=Counter)
    #: The last :data:`MAX_EVENTS` connection events, oldest first.  Lists and
    #: plain dicts, not a deque and OrderedDicts: one record per charge point,
    #: and a deque alone is 760 bytes.
    events: list[dict[str, Any]] = field(default_factory=list)
    #: UniqueId -> (Action, sent at) of CALLs awaiting an answer, each direction
    #: (dicts keep insertion order: the first key is the oldest).
    timed_in: dict[str, tuple[str, float]] = field(default_factory=dict)
    timed_out: dict[str, tuple[str, float]] = field(default_factory=dict)


class _Bounded:
    """Names as they are, up to :data:`MAX_NAMES` distinct ones; then :data:`OTHER`."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, name: str) -> str:
        if name in self._seen:
            return name
        if len(self._seen) >= MAX_NAMES:
            return OTHER
        self._seen.add(name)
        return name


#: The type name of each message class (an enum's ``name`` is a slow property).
_KINDS: dict[type, str] = {
    Call: MessageType.CALL.name,
    CallResult: MessageType.CALLRESULT.name,
    CallError: MessageType.CALLERROR.name,
    CallResultError: MessageType.CALLRESULTERROR.name,
    Send: MessageType.SEND.name,
}


_ERRORS = (CallError, CallResultError)


@implementer(IGatewayEvents)
class Recorder:
    """Keeps the records, counts the metrics and writes the log lines."""

    def __init__(
        self, clock: IReactorTime, metrics: Metrics, flight: FlightRecorder | None = None
    ) -> None:
        self._clock = clock
        self.metrics = metrics
        #: The flight recorder: every charge point's recent frames.
        self.flight = flight if flight is not None and flight.on else None
        if flight is not None:
            metrics.registry.register(flight)
        self.records: dict[str, Record] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._mqtt_connects = 0
        #: Listeners of published envelopes (the admin API's CALLs).
        self._action = _Bounded()
        self._code = _Bounded()
        #: (inbound, kind, bounded action) -> (labels, counter of the labels).
        self._counted: dict[tuple[bool, str, str | None], tuple[tuple[str, str, str], Any]] = {}

    def _event(self, record: Record, event: str, **details: Any) -> None:
        events = record.events
        events.append({"time": self._clock.seconds(), "event": event, **details})
        if len(events) > MAX_EVENTS:
            del events[:-MAX_EVENTS]

    # --- IGatewayEvents ---

    def connected(
        self, identity: str, version: str, listener: str, profile: int, peer: str
    ) -> None:
        old = self.records.get(identity)
        record = Record(identity, version, listener, profile, peer, self._clock.seconds())
        if old is not None:
            record.events.extend(old.events)
            self._gone.pop(identity, None)
        self.records[identity] = record
        if self.flight is not None:
            self.flight.connected(identity)
        self._event(record, "connect", peer=peer, version=version, listener=listener)
        self.metrics.connections.labels(version, listener).inc()
        _log.info(
            "{cid}: connected ({version}) from {peer} on listener {listener}",
            cid=identity,
            version=version,
            peer=peer,
            listener=listener,
        )

    def disconnected(self, identity: str, peer: str, code: int | None, reason: str | None) -> None:
        record = self.records.get(identity)
        # Autobahn reports a pong that did not come as an unclean close (1006).
        ping_timeout = "ping timeout" in (reason or "")
        if record is not None and record.peer == peer and record.connected:
            record.connected = False
            self._event(
                record, "ping timeout" if ping_timeout else "close", code=code, reason=reason
            )
            self._forget_later(identity)
            if self.flight is not None:
                self.flight.disconnected(identity)
        self.metrics.disconnections.labels(str(code if code is not None else 1006)).inc()
        _log.info(
            "{cid}: disconnected from {peer}, close code {code}{why}",
            cid=identity,
            peer=peer,
            code=code,
            why=f" ({reason})" if reason else "",
        )

    def _forget_later(self, identity: str) -> None:
        self._gone[identity] = None
        self._gone.move_to_end(identity)
        while len(self._gone) > MAX_GONE:
            gone, _ = self._gone.popitem(last=False)
            self.records.pop(gone, None)

    def frame(self, identity: str, inbound: bool, text: str) -> None:
        # Only the size: the session parses the frame and reports message().
        # isascii() is O(1) in CPython; most frames are ASCII.
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        if self.flight is not None:
            self.flight.frame(identity, inbound, text)
        self.metrics.bytes_of("in" if inbound else "out")(size)
        record = self.records.get(identity)
        if record is not None:
            if inbound:
                record.bytes_in += size
            else:
                record.bytes_out += size

    def message(self, identity: str, inbound: bool, message: Message | None) -> None:
        record = self.records.get(identity)
        if message is None:
            kind, unique_id, action, code = "INVALID", "", None, None
        else:
            cls = type(message)
            kind, unique_id, action = _KINDS[cls], message.unique_id, message.action
            code = message.error_code if isinstance(message, _ERRORS) else None
        if action is not None:
            action = self._action(action)
        now = self._clock.seconds()
        if record is not None:
            # The CALLs each side waits to answer, to name the action of an
            # answer and time it: ours (out) answered by the charge point (in).
            if kind == "CALL":
                if action is not None:
                    mine = record.timed_in if inbound else record.timed_out
                    mine[unique_id] = (action, now)
                    while len(mine) > MAX_TIMED:
                        del mine[next(iter(mine))]
            elif kind == "CALLRESULT" or kind == "CALLERROR":
                timed = (record.timed_out if inbound else record.timed_in).pop(unique_id, None)
                if timed is not None:
                    action = timed[0]
                    metrics = self.metrics
                    histogram = (
                        metrics.downstream_latency_of if inbound else metrics.upstream_latency_of
                    )
                    histogram(action)(max(0.0, now - timed[1]))
        # The labels and the counter of each (direction, kind, action): names
        # are bounded, so this is too.
        slot = self._counted.get((inbound, kind, action))
        if slot is None:
            labels = ("in" if inbound else "out", kind, action or "")
            slot = self._counted[(inbound, kind, action)] = (
                labels,
                self.metrics.messages_of(*labels),
            )
        labels, count = slot
        count(1)
        if code is not None:
            code = self._code(code)
            self.metrics.call_errors_of(labels[0], code)(1)
        if record is None:
            return
        if inbound:
            record.messages_in += 1
            record.last_message_at = now
        else:
            record.messages_out += 1
        record.by_type[labels] += 1
        if code is not None:
            record.errors[code] += 1

    def refused(self, listener: str, peer: str, uri: str, status: str, reason: str) -> None:
        # The listener and the TLS layer log refusals themselves, with the URI.
        self.metrics.refused.labels(status).inc()
        identity = uri.rstrip("/").rsplit("/", 1)[-1] if uri else ""
        record = self.records.get(identity)
        if record is not None:
            self._event(record, "refusal", peer=peer, status=status, reason=reason)

    def throttled(self, listener: str) -> None:
        self.metrics.throttled.labels(listener).inc()

    def takeover(self, identity: str, across: bool) -> None:
        self.metrics.takeovers.labels("across" if across else "same").inc()
        record = self.records.get(identity)
        if record is not None:
            self._event(record, "takeover", across=across)
        _log.info(
            "{cid}: taken over by a newer connection {where} (from {peer})",
            cid=identity,
            where="on another gateway instance" if across else "on this instance",
            peer=record.peer if record is not None else "?",
        )

    def published(self, envelope: Envelope) -> None:
        message = envelope.message
        identity = envelope.charge_point or ""
        if envelope.origin == ORIGIN_GATEWAY and isinstance(message, CallError):
            self.metrics.gateway_errors.labels(message.error_code).inc()
            record = self.records.get(identity)
            if record is not None:
                record.errors[message.error_code] += 1
            _log.warn(
                "{cid}: gateway error {code} for {action} {id} (peer {peer}): {why}",
                cid=identity,
                peer=record.peer if record is not None else "-",
                code=message.error_code,
                action=message.action or "-",
                id=message.unique_id,
                why=message.error_description,
            )

    def relayed(
        self, identity: str, upstream: bool, topic: str, payload: bytes, message: Message | None
    ) -> None:
        if self.flight is not None:
            self.flight.relayed(identity, upstream, topic, payload, message)

    def validation_failed(self, action: str, upstream: bool) -> None:
        self.metrics.validation_failures_of(self._action(action), "in" if upstream else "out")(1)

    def auth_http(self, result: str) -> None:
        self.metrics.auth_http.labels(result).inc()

    def forwarded(self, direction: str, seconds: float) -> None:
        self.metrics.forward_frames_of(direction)(1)
        self.metrics.forward_latency_of(direction)(max(0.0, seconds))

    def upstream_failed(self, reason: str) -> None:
        self.metrics.forward_failures.labels(reason).inc()

    def mqtt_connected(self) -> None:
        self._mqtt_connects += 1
        if self._mqtt_connects > 1:
            self.metrics.mqtt_reconnects.inc()
