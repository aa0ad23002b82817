# -*- test-case-name: tests.unit.router.test_exactly_once_soak -*-
"""
The per-charge point subscriptions an earlier run under the same ``[gateway]
id`` left in the resumed MQTT session (a run killed, or one whose unsubscribe
did not reach the broker), for charge points this run does not hold.

- What that session replays is routed before this process connected, and is
  decided once the retained presence is read the first time
  (:mod:`ocppgw.router.unclaimed`).
- While that first reading lasts, the retained presence of a charge point
  this run does not hold drops the subscription for it (whichever instance
  the presence names: the charge point may have moved since that run held it).
- After it, a message on such a subscription was routed live: the catch-all
  got its copy too and answers it, or the holder's own subscription has it.
  It is not answered here, and the subscription is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ocppgw.interfaces import IMQTTClient
from ocppgw.ocpp.versions import SUPPORTED
from ocppgw.router.topics import topic_matches

if TYPE_CHECKING:
    from ocppgw.config import Config


class Earlier:
    """Subscriptions an earlier run of this ``[gateway] id`` left behind."""

    def __init__(
        self,
        config: Config,
        mqtt: IMQTTClient,
        values: Callable[[str, str | None], dict[str, str]],
        subscriptions: Mapping[str, str],
    ) -> None:
        self._gateway = config.gateway_id
        self._mqtt = mqtt
        self._values = values
        self._template = config.downstream.topic.template
        #: This run's per-charge point subscriptions (the router's).
        self._subscriptions = subscriptions
        #: Whether the retained presence was read after this process's
        #: first connect (the resumed session's replay came before it).
        self.replayed = False
        #: Identities whose left subscription is dropped, and identities
        #: whose subscription this run dropped itself (a copy may still come
        #: on it): two generations each, turned over by :meth:`turn_over`.
        self._dropped: set[str] = set()
        self._dropped_before: set[str] = set()
        self._released: set[str] = set()
        self._released_before: set[str] = set()

    def left(self, identity: str) -> bool:
        """Whether the subscription an earlier run left for ``identity`` was dropped lately."""
        return identity in self._dropped or identity in self._dropped_before

    def released(self, identity: str) -> None:
        """This run dropped its own subscription for ``identity`` (grace end, moved)."""
        self._released.add(identity)

    def turn_over(self) -> None:
        """Forget what is two turns old (its unsubscribe is long done): bounded."""
        self._dropped_before, self._dropped = self._dropped, set()
        self._released_before, self._released = self._released, set()

    def live(self, identity: str, topic: str) -> bool:
        """
        Whether a message on ``topic`` for ``identity`` (not held here) came
        on a subscription an earlier run left, routed after this process
        read its replay: the catch-all answers it.  That subscription is
        dropped.
        """
        if (
            not self.replayed
            or identity in self._subscriptions
            or identity in self._released
            or identity in self._released_before
        ):
            return False
        if not self.left(identity):
            for topic_filter in {
                self._template.subscription(self._values(identity, v)) for v in (*SUPPORTED, None)
            }:
                if topic_matches(topic_filter, topic):
                    self._mqtt.unsubscribe(topic_filter)
        self._dropped.add(identity)
        return True

    def drop(self, identity: str, payload: bytes) -> None:
        """
        The presence of ``identity``, which this run neither holds nor
        subscribed: the subscription an earlier run may have left for it is
        dropped, so that its CALLs are not answered both here and by the
        catch-all.  What the session had queued for it was delivered (and
        answered) first.  After the first reading, only when the presence is
        this gateway's (an earlier run held it): the others would cost one
        unsubscribe per charge point of every instance.
        """
        try:
            body = json.loads(payload)
            gateway, version = body["Gateway"], body.get("Protocol")
        except (ValueError, KeyError, TypeError):
            return
        if (self.replayed and gateway != self._gateway) or not (
            version is None or isinstance(version, str)
        ):
            return
        self._dropped.add(identity)
        self._mqtt.unsubscribe(self._template.subscription(self._values(identity, version)))
