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
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from ocppgw.ocpp.envelope import Envelope


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
