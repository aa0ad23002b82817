# -*- test-case-name: tests.unit.mqtt.test_session -*-
"""
The filters one MQTT connection is subscribed to, kept across reconnects.

- after each connect every filter is subscribed again: the broker may have
  lost the session (MQTT 5.0 §3.1.2.4 clean start, 3.1.1 §3.1.2.4);
- a filter given up while disconnected is unsubscribed on the next connect,
  since the session the connection resumes still holds it and its messages
  would keep coming;
- an unsubscribe also reaches a filter this process never subscribed: one a
  previous run of the same client id left in the resumed session.
"""

from __future__ import annotations

from paho.mqtt.client import Client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Subscriptions:
    """What ``client`` is subscribed to, and what it gave up while away."""

    def __init__(self, client: Client, v5: bool) -> None:
        self._client = client
        self._v5 = v5
        #: filter -> (qos, MQTT 5 subscription identifier or 0)
        self._filters: dict[str, tuple[int, int]] = {}
        #: Filters given up while disconnected: the resumed session still has them.
        self._stale: set[str] = set()

    def add(self, topic_filter: str, qos: int, identifier: int, connected: bool) -> None:
        """Subscribe ``topic_filter`` now if ``connected``, and after every connect."""
        self._filters[topic_filter] = (qos, identifier)
        self._stale.discard(topic_filter)
        if connected:
            self._subscribe(topic_filter, qos, identifier)

    def remove(self, topic_filter: str, connected: bool) -> None:
        """Unsubscribe ``topic_filter`` now if ``connected``, else on the next connect."""
        self._filters.pop(topic_filter, None)
        if connected:
            self._client.unsubscribe(topic_filter)
        else:
            self._stale.add(topic_filter)

    def restore(self) -> None:
        """After a connect: subscribe every filter again, drop the stale ones."""
        for topic_filter, (qos, identifier) in self._filters.items():
            self._subscribe(topic_filter, qos, identifier)
        stale, self._stale = self._stale, set()
        for topic_filter in stale:
            if topic_filter not in self._filters:
                self._client.unsubscribe(topic_filter)

    def _subscribe(self, topic_filter: str, qos: int, identifier: int) -> None:
        properties = None
        if self._v5 and identifier:
            properties = Properties(PacketTypes.SUBSCRIBE)
            properties.SubscriptionIdentifier = identifier
        self._client.subscribe(topic_filter, qos, properties=properties)
