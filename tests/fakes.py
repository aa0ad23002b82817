# -*- test-case-name: tests.unit.test_interfaces,tests.unit.session.test_lifecycle -*-
"""Recording fakes of the layer interfaces, for unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ocppgw.interfaces import (
    IChargePointConnection,
    IChargePointSession,
    IMQTTClient,
    IRouter,
)
from ocppgw.ocpp.envelope import Envelope
from ocppgw.router.topics import topic_matches


@implementer(IChargePointConnection)
class FakeConnection:
    """
    Records the frames a session sends and how it closed.

    Like Autobahn, it sends nothing once a close frame went out (:meth:`close`)
    or came in (:meth:`peer_closes`): such a frame lands in ``refused``, not in
    ``frames``, and its ``session`` (if set) is told ``closing()`` first.
    """

    peer = "tcp4:192.0.2.1:5555"

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.refused: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.open = True
        self.session: IChargePointSession | None = None

    def send_frame(self, text: str) -> None:
        (self.frames if self.open else self.refused).append(text)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._leave_open()

    def peer_closes(self) -> None:
        """The charge point's close frame arrives."""
        self._leave_open()

    def _leave_open(self) -> None:
        if self.open:
            self.open = False
            if self.session is not None:
                self.session.closing()

    def sent(self) -> list[Any]:
        """The frames sent, decoded."""
        return [json.loads(f) for f in self.frames]


@implementer(IRouter)
class FakeRouter:
    """Records published envelopes; each publish succeeds unless told otherwise."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.invalid: list[str] = []
        self.released: list[object] = []
        self.registered_as: list[tuple[str, str]] = []
        self.failing = False

    def registered(self, charge_point: str, status: str) -> None:
        self.registered_as.append((charge_point, status))

    def publish_invalid(self, charge_point: str, version: str, frame: str) -> None:
        self.invalid.append(frame)

    def release(self, session: object) -> None:
        self.released.append(session)

    def publish(self, envelope: Envelope) -> Deferred[None]:
        self.envelopes.append(envelope)
        if self.failing:
            return fail(RuntimeError("broker gone"))
        return succeed(None)


@implementer(IMQTTClient)
class FakeMQTT:
    """
    Records publishes and subscriptions; acks each publish at once, or, while
    ``failing``, refuses it as a full buffer does (nothing is recorded).
    """

    def __init__(self) -> None:
        self.failing = False
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.subscriptions: dict[str, int] = {}
        self.identifiers: dict[str, int] = {}
        self.unsubscribed: list[str] = []
        self.handler: Callable[[str, bytes, tuple[int, ...]], None] | None = None
        self.supports_identifiers = True

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> Deferred[None]:
        if self.failing:
            return fail(RuntimeError("MQTT buffer full"))
        self.published.append((topic, payload, qos, retain))
        return succeed(None)

    def subscribe(self, topic_filter: str, qos: int, identifier: int = 0) -> None:
        self.subscriptions[topic_filter] = qos
        if identifier:
            self.identifiers[topic_filter] = identifier

    def unsubscribe(self, topic_filter: str) -> None:
        # Like MQTTClient: also a filter only a resumed session has.
        self.unsubscribed.append(topic_filter)
        self.subscriptions.pop(topic_filter, None)
        self.identifiers.pop(topic_filter, None)

    def set_message_handler(self, handler: Callable[[str, bytes, tuple[int, ...]], None]) -> None:
        self.handler = handler

    def deliver(self, topic: str, payload: object, via: str | None = None) -> None:
        """
        Hand the router a message as the broker would: through every matching
        subscription (one copy each, with its identifier), or only ``via``.
        """
        assert self.handler is not None
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        filters = [via] if via is not None else [
            f for f in self.subscriptions if topic_matches(f.split("/", 2)[2]
                                                           if f.startswith("$share/") else f,
                                                           topic)
        ]
        for f in filters:
            self.handler(topic, data, (self.identifiers[f],) if f in self.identifiers else ())

    def json(self) -> list[tuple[str, Any]]:
        """Every non-retained message published, decoded."""
        return [(t, json.loads(p)) for t, p, _, r in self.published if not r]

    def retained(self) -> list[tuple[str, Any]]:
        """Every retained message published (presence), decoded."""
        return [(t, json.loads(p)) for t, p, _, r in self.published if r]
