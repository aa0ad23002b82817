# -*- test-case-name: tests.unit.test_interfaces -*-
"""
The contracts between the layers (docs/design.md, "The flow").

    connection  --IChargePointSession-->     (the socket hands frames to its session)
    session     --IChargePointConnection-->  (the session talks to its socket)
    session     --IRouter-->                 (the session hands messages to the router)
    router      --IMQTTClient-->             (the router publishes and subscribes)

Each layer sees only the interface of the one beside it, so the session never
imports Autobahn or paho, and tests replace a neighbour by a recording fake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface, implementer

if TYPE_CHECKING:
    from ocppgw.ocpp.envelope import Envelope
    from ocppgw.ocpp.messages import Message

#: The WebSocket close codes the gateway sends (RFC 6455 §7.4.1), for
#: :meth:`IChargePointConnection.close`: defined once, used by every stage.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012


class IChargePointSession(Interface):
    """One charge point's session, as its connection sees it."""

    def frame_received(text: str) -> None:
        """One text frame arrived from the charge point."""

    def closing() -> None:
        """
        The connection stopped being open: a close frame went out or came in
        (RFC 6455 §7.1.2), or the TCP connection is being dropped.  Called
        once, before the connection is lost; nothing sent after it arrives.
        """


class IChargePointConnection(Interface):
    """
    One charge point's WebSocket, as the session sees it.

    The contract on sending: the connection tells its session
    :meth:`IChargePointSession.closing` the moment it stops being open, and
    the session sends it nothing after that.  A frame handed over anyway is
    dropped (and logged), never raised: WebSocket sends nothing once a close
    frame was sent or received (RFC 6455 §5.5.1).
    """

    peer: str = Attribute("The remote address, for presence and logs.")

    def send_frame(text: str) -> None:
        """Send one OCPP-J text frame; only while open (see above)."""

    def close(code: int, reason: str) -> None:
        """Close the WebSocket with a close code and reason; closing() follows at once."""


class IRouter(Interface):
    """Where a session sends what is meant for the backend."""

    def publish(envelope: Envelope) -> Deferred[None]:
        """
        Publish ``envelope`` on the topic its type and Action select.

        The Deferred fires once the broker has the message (PUBACK at QoS >= 1)
        and fails when it cannot be published (buffer full, no such topic).
        """

    def publish_invalid(charge_point: str, version: str, frame: str) -> None:
        """Publish a frame refused by validation, whole, on the invalid topic (if set)."""

    def registered(charge_point: str, status: str) -> None:
        """
        The backend answered ``charge_point``'s BootNotification on its
        current connection with ``status`` (Accepted, Pending, Rejected), a
        change: its presence says so.
        """

    def release(session: object) -> None:
        """
        ``session`` is over (its grace period ran out, or its identity moved
        to another instance): stop routing to it, if it is still the one.
        """


class IMQTTClient(Interface):
    """The MQTT connection as the router sees it."""

    def publish(topic: str, payload: bytes, qos: int, retain: bool = False) -> Deferred[None]:
        """Publish; the Deferred fires on PUBACK (QoS >= 1) or once written (QoS 0)."""

    supports_identifiers: bool = Attribute(
        "Whether subscription identifiers and shared subscriptions (MQTT 5) work."
    )

    def subscribe(topic_filter: str, qos: int, identifier: int = 0) -> None:
        """
        Subscribe now and again after every reconnect; a non-zero MQTT 5
        subscription ``identifier`` comes back with each message it matched.
        """

    def unsubscribe(topic_filter: str) -> None:
        """Stop receiving ``topic_filter``."""

    def set_message_handler(handler: Callable[[str, bytes, tuple[int, ...]], None]) -> None:
        """Call ``handler(topic, payload, subscription_identifiers)`` for every message."""


class IGatewayEvents(Interface):
    """
    What happens to charge points, as operators see it: the admin API, the
    metrics and the log lines are made from these.  Each stage calls them
    where the event happens; every method returns at once and never raises.
    No charge point identity becomes a metric label.
    """

    def connected(identity: str, version: str, listener: str, profile: int, peer: str) -> None:
        """A charge point's WebSocket opened with ``version``."""

    def disconnected(identity: str, peer: str, code: int | None, reason: str | None) -> None:
        """A charge point's WebSocket closed, with its close code and reason (RFC 6455 §7.1.5)."""

    def frame(identity: str, inbound: bool, text: str) -> None:
        """One OCPP-J text frame from (``inbound``) or to the charge point: its size."""

    def message(identity: str, inbound: bool, message: Message | None) -> None:
        """The message of that frame, as the session parsed it (``None``: unreadable)."""

    def refused(listener: str, peer: str, uri: str, status: str, reason: str) -> None:
        """A handshake refused: an HTTP ``status`` (400, 401, ...) or ``TLS``."""

    def throttled(listener: str) -> None:
        """A handshake answered 503: over ``listener``'s ``max_handshake_rate``."""

    def takeover(identity: str, across: bool) -> None:
        """A newer connection took ``identity`` over, here or (``across``) on another instance."""

    def published(envelope: Envelope) -> None:
        """The router is publishing ``envelope`` for the backend."""

    def relayed(
        identity: str, upstream: bool, topic: str, payload: bytes, message: Message | None
    ) -> None:
        """
        An MQTT message published for (``upstream``) or received for a charge
        point, as it is on the broker; ``message``: what it holds (``None``:
        undecodable).
        """

    def validation_failed(action: str, upstream: bool) -> None:
        """A payload of ``action`` failed schema validation; ``upstream``: the charge point's."""

    def mqtt_connected() -> None:
        """The MQTT client (re)connected to the broker."""

    def auth_http(result: str) -> None:
        """The HTTP authentication service: ``allow``, ``deny``, ``error`` or ``cache_hit``."""

    def forwarded(direction: str, seconds: float) -> None:
        """
        Forward mode relayed a frame that ``direction`` sent (``ChargePoint``,
        ``CSMS``, ``Backend``) in ``seconds`` (received to written).
        """

    def upstream_failed(reason: str) -> None:
        """
        Forward mode's connection to a central system failed: the status the
        charge point got (``401``, ``502``, ``503``, ...) or ``lost`` (mid-session).
        """


@implementer(IGatewayEvents)
class NoEvents:
    """Nobody listens: what each stage holds until the gateway is assembled."""

    def connected(
        self, identity: str, version: str, listener: str, profile: int, peer: str
    ) -> None:
        pass

    def disconnected(self, identity: str, peer: str, code: int | None, reason: str | None) -> None:
        pass

    def frame(self, identity: str, inbound: bool, text: str) -> None:
        pass

    def message(self, identity: str, inbound: bool, message: Message | None) -> None:
        pass

    def refused(self, listener: str, peer: str, uri: str, status: str, reason: str) -> None:
        pass

    def throttled(self, listener: str) -> None:
        pass

    def takeover(self, identity: str, across: bool) -> None:
        pass

    def published(self, envelope: Envelope) -> None:
        pass

    def relayed(
        self, identity: str, upstream: bool, topic: str, payload: bytes, message: Message | None
    ) -> None:
        pass

    def validation_failed(self, action: str, upstream: bool) -> None:
        pass

    def mqtt_connected(self) -> None:
        pass

    def auth_http(self, result: str) -> None:
        pass

    def forwarded(self, direction: str, seconds: float) -> None:
        pass

    def upstream_failed(self, reason: str) -> None:
        pass


#: The no-op default of every stage's ``events``.
NO_EVENTS = NoEvents()


class CallJournal(Protocol):
    """
    Where the backend CALLs a session holds are kept, so that a process
    killed with them answers each when it starts again
    (:class:`ocppgw.router.journal.Journal`).
    """

    def queued(self, identity: str, version: str, unique_id: str, action: str) -> None: ...

    def sent(self, identity: str, unique_id: str) -> None: ...

    def answered(self, identity: str, unique_id: str) -> None: ...
