# -*- test-case-name: tests.unit.router.test_exactly_once_soak -*-
"""
Catch-all copies for charge points no instance is known to hold now, and
their ``Offline`` answers.

A copy waits :data:`OFFLINE_WAIT` for an online presence of its charge point
(its holder may have subscribed just before the message was routed and
published its presence just after): if one comes, the copy is published
again, unchanged, on the charge point's downstream topic, so the holder's
subscription has it (the session knows a duplicate); else it is answered
``Offline`` (``Invalid`` when it cannot be read).  A copy published again
reaches a catch-all that knows the holder, which leaves it alone.

A copy of a CALL answered ``Offline`` here within ``[dnstream]
awaiting_timeout`` (same UniqueId, Action and payload: a QoS 1 redelivery, a
backend's retry) gets no second answer, as in a session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw import wire
from ocppgw.interfaces import IMQTTClient
from ocppgw.ocpp.envelope import CodecError, DecodeContext, GatewayError
from ocppgw.ocpp.messages import Call
from ocppgw.ocpp.versions import OCPP21
from ocppgw.router.answers import Answers
from ocppgw.router.presence import Presence
from ocppgw.session.recent import RecentCalls
from ocppgw.session.rules import Session

if TYPE_CHECKING:
    from ocppgw.config import Config

_log = Logger()

#: Why a copy nobody claimed is answered Offline.
NOBODY = "charge point is not connected to any gateway"

#: How long the catch-all's copy of a message for a charge point no instance
#: holds waits for an online presence of it (the holder may have subscribed
#: just before the message was routed, and published its presence just
#: after) before it is answered Offline.
OFFLINE_WAIT = 0.3

#: At most this many CALLs answered Offline are remembered (all charge points).
OFFLINE_MEMORY = 65_536


class Offline:
    """Copies waiting for a holder, by identity, and the Offline answers."""

    def __init__(
        self,
        config: Config,
        mqtt: IMQTTClient,
        clock: IReactorTime,
        presence: Presence,
        sessions: Mapping[str, Session],
        answers: Answers,
    ) -> None:
        self._qos = config.mqtt.qos
        self._mqtt = mqtt
        self._clock = clock
        self._presence = presence
        self._sessions = sessions
        self._answers = answers
        self._dn_codec = wire.get(config.downstream.topic.codec)
        #: CALLs answered Offline lately, by identity and UniqueId.
        self._answered = RecentCalls(clock, config.downstream.awaiting_timeout, OFFLINE_MEMORY)
        #: Copies waiting for an online presence (:data:`OFFLINE_WAIT`), by identity.
        self.waiting: dict[str, dict[tuple[str, bytes], IDelayedCall]] = {}

    def wait(self, identity: str, topic: str, payload: bytes) -> None:
        """A copy for a charge point no instance is known to hold: Offline, unless one does soon."""
        # Copies of one message wait once.
        waiting = self.waiting.setdefault(identity, {})
        key = (topic, payload)
        if key not in waiting:
            waiting[key] = self._clock.callLater(OFFLINE_WAIT, self._nobody, identity, key)

    def _nobody(self, identity: str, key: tuple[str, bytes]) -> None:
        """No presence of ``identity`` came: answer its copy Offline."""
        waiting = self.waiting.get(identity)
        if waiting is None or waiting.pop(key, None) is None:
            return
        if not waiting:
            del self.waiting[identity]
        self.answer(identity, key[0], key[1], NOBODY)

    def presence_of(self, identity: str) -> None:
        """A presence of ``identity`` arrived while copies wait: online elsewhere, they go there."""
        if self._presence.held_elsewhere(identity):
            self.claimed(identity)

    def back(self) -> None:
        """This instance is known up again: copies of its own charge points go to them."""
        for identity in [i for i in self.waiting if i in self._sessions]:
            self.claimed(identity)

    def claimed(self, identity: str) -> None:
        """
        ``identity`` is held now (here, or an online presence of another
        instance arrived): publish its waiting copies again on its topic, for
        its subscription (the session drops one it already has).
        """
        waiting = self.waiting.pop(identity, None)
        if waiting is None:
            return
        for (topic, payload), call in waiting.items():
            call.cancel()
            self.pass_on(identity, topic, payload)

    def pass_on(self, identity: str, topic: str, payload: bytes) -> None:
        """Publish a copy again, unchanged, for the subscription of its charge point's holder."""
        self._mqtt.publish(topic, payload, self._qos).addErrback(
            self._not_republished, identity, topic, payload
        )

    def _not_republished(self, failure: Failure, identity: str, topic: str, payload: bytes) -> None:
        """The copy could not be published again: its backend gets an Offline after all."""
        _log.warn(
            "{cid}: a command could not be passed on to its holder: {f}",
            cid=identity,
            f=failure.getErrorMessage(),
        )
        self.answer(identity, topic, payload, NOBODY)

    def leave(self) -> None:
        """The gateway stops: every copy that waits is answered Offline now."""
        for identity in list(self.waiting):
            for key, call in self.waiting.pop(identity).items():
                call.cancel()
                self.answer(identity, key[0], key[1], NOBODY)

    def answer(self, identity: str, topic: str, payload: bytes, why: str) -> None:
        """Answer a downstream message for an absent charge point: Offline (or Invalid)."""
        try:
            # Any version's message types are possible for an unknown peer.
            message = self._dn_codec.decode(payload, DecodeContext(OCPP21)).message
        except CodecError as e:
            self._answers.reject(identity, None, e, topic, payload)
            return
        action = getattr(message, "action", None)
        if isinstance(message, Call):
            key = f"{identity}\n{message.unique_id}"
            known = self._answered.get(key)
            if known == (message.action, message.payload):
                return  # a copy: its Offline was published
            if known is None:
                self._answered.add(key, message.action, message.payload)
        self._answers.error(identity, None, message.unique_id, GatewayError.OFFLINE, why, action)
