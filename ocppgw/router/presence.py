# -*- test-case-name: tests.unit.router.test_router -*-
"""
Who holds which identity, across the gateway instances sharing a broker.

- each identity's presence is one retained message (``[presence] topic``):
  online or offline, which gateway, since when; and each instance's own
  (``gateway_topic``), which its MQTT last will sets offline;
- every instance reads them back: the newest connection of an identity wins
  (docs/design.md, what users rely on, 4), so a newer ``Since`` from another gateway for an
  identity connected here makes this instance let go of it;
- a retained "online" of this gateway for an identity it lacks is left over
  from an earlier run, and is set offline;
- the offline catch-all answers for an identity only when no instance has had
  it within ``offline_ttl`` (it still holds its subscription then).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocppgw.interfaces import IMQTTClient
from ocppgw.router.topics import TopicTemplate
from ocppgw.session.rules import rfc3339

if TYPE_CHECKING:
    from ocppgw.config import Config
    from ocppgw.session.rules import Session

_log = Logger()


def topic_values(gateway: str, identity: str, version: str | None) -> dict[str, str]:
    """The values of a topic template for one charge point (or none: ``identity=""``)."""
    return {"cid": identity, "gateway": gateway, "version": version or ""}


class Presence:
    """This instance's presence messages, and what the other instances say."""

    def __init__(self, config: Config, mqtt: IMQTTClient, clock: IReactorTime) -> None:
        self._config = config
        self._mqtt = mqtt
        self._clock = clock
        self._qos = config.mqtt.qos
        #: When each identity's current connection was made (epoch seconds).
        self._since: dict[str, float] = {}
        #: What other instances said of identities: (online, when we heard it).
        self._elsewhere: dict[str, tuple[bool, float]] = {}
        self._topic_in = TopicTemplate.parse(config.presence.topic.text, downstream=True)
        #: The subscription that brings every identity's presence.
        self.topic_filter = self._topic_in.subscription(self._values("", None), any_cid=True)

    def _values(self, identity: str, version: str | None) -> dict[str, str]:
        return topic_values(self._config.gateway_id, identity, version)

    def identity_of(self, topic: str) -> str | None:
        """The identity whose presence ``topic`` is, if it is a presence topic."""
        return self._topic_in.charge_point_of(topic)

    def online(self, identity: str, version: str, peer: str) -> None:
        """``identity`` connected here now."""
        self._since[identity] = self._clock.seconds()
        self._publish(identity, version, True, peer)

    def offline(self, identity: str, version: str | None) -> None:
        """``identity``'s connection here is gone."""
        self._publish(identity, version, False)

    def forget(self, identity: str) -> None:
        """This instance holds nothing for ``identity`` any more."""
        self._since.pop(identity, None)

    def _publish(self, identity: str, version: str | None, online: bool, peer: str = "") -> None:
        now = self._clock.seconds()
        body: dict[str, Any] = {
            "ChargePointId": identity,
            "Online": online,
            "Gateway": self._config.gateway_id,
            "Protocol": version,
            "Since": rfc3339(self._since.get(identity, now) if online else now),
        }
        if online:
            body["RemoteAddress"] = peer
        topic = self._config.presence.topic.render(self._values(identity, version))
        self._mqtt.publish(topic, json.dumps(body).encode(), self._qos, retain=True).addErrback(
            lambda f: _log.error(
                "presence of {cid} not published: {f}", cid=identity, f=f.getErrorMessage()
            )
        )

    def gateway(self, online: bool) -> tuple[str, bytes]:
        """The retained topic and payload saying whether this instance is up."""
        topic = self._config.presence.gateway_topic.render(self._values("", None))
        body = {
            "Gateway": self._config.gateway_id,
            "Online": online,
            "Since": rfc3339(self._clock.seconds()),
        }
        return topic, json.dumps(body).encode()

    def received(self, identity: str, payload: bytes, here: Session | None) -> bool:
        """
        A presence message for ``identity`` (``here``: its session on this
        instance).  True when a newer connection on another instance wins, so
        this instance must let go of ``here``.
        """
        try:
            body = json.loads(payload)
            online, gateway = body["Online"], body["Gateway"]
        except (ValueError, KeyError, TypeError):
            return False  # not ours to judge; an empty retained message clears presence
        if gateway == self._config.gateway_id:
            if online is True and here is None:
                # A presence left behind by an earlier run of this instance.
                self._publish(identity, body.get("Protocol"), False)
            return False
        self._elsewhere[identity] = (online is True, self._clock.seconds())
        if online is not True or here is None or not here.connected:
            return False
        since = body.get("Since")
        if isinstance(since, str) and since > rfc3339(self._since.get(identity, 0)):
            _log.info(
                "{cid}: connected again through gateway {gw}; closing here",
                cid=identity,
                gw=gateway,
            )
            return True
        return False

    def unclaimed(self, identity: str) -> bool:
        """
        Whether no other instance has ``identity``, nor had it within
        ``offline_ttl`` (so the catch-all answers for it).
        """
        seen = self._elsewhere.get(identity)
        if seen is None:
            return True
        online, when = seen
        if online or self._clock.seconds() - when < self._config.downstream.offline_ttl:
            return False
        del self._elsewhere[identity]
        return True
