# -*- test-case-name: tests.unit.router.test_exactly_once_presence,tests.unit.router.test_router -*-
"""
This instance's own presence on the broker, from each connect to its goodbye.

- After each connect (the broker may have lost every retained message and
  session) the gateway presence is published, retained, after the
  subscriptions were made, and every charge point's presence again.
- What other instances said of identities long gone is forgotten every
  ``[dnstream] offline_ttl`` (at least every second), so memory stays bounded.
- Stopping, the goodbye (gateway offline) hands the answers to another
  instance's catch-all when one is up; its echo tells when the broker routed
  it, so a message routed after it is that catch-all's to answer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ocppgw.interfaces import IMQTTClient
from ocppgw.router.presence import Presence
from ocppgw.router.unclaimed import Unclaimed

if TYPE_CHECKING:
    from ocppgw.config import Config

_log = Logger()


class Instance:
    """The gateway presence of this instance, its prune timer, and its goodbye."""

    def __init__(
        self,
        config: Config,
        mqtt: IMQTTClient,
        clock: IReactorTime,
        presence: Presence,
        unclaimed: Unclaimed,
    ) -> None:
        self._config = config
        self._mqtt = mqtt
        self._clock = clock
        self._presence = presence
        self._unclaimed = unclaimed
        self._pruning: IDelayedCall | None = None
        #: Stopping: the goodbye (gateway offline) published, when another
        #: instance is up to take over the answers (``handover``).
        self._goodbye: bytes | None = None
        self.handover = False
        #: The gateway stops: no prune timer from now on.
        self._stopping = False
        #: This instance's gateway presence topic.
        self._own_topic = presence.gateway(True)[0]

    def announce(self) -> None:
        """This instance and its charge points are here (after each connect)."""
        # Published after the subscriptions were (re)made: until its echo,
        # "no instance has it" is not decided.
        self._unclaimed.announced(self._say_up())
        self._presence.republish()
        self._schedule_prune()

    def _say_up(self) -> bytes:
        topic, payload = self._presence.gateway(True)
        self._mqtt.publish(topic, payload, 1, retain=True).addErrback(
            lambda f: _log.error("gateway presence not published: {f}", f=f.getErrorMessage())
        )
        return payload

    def _prune_tick(self) -> None:
        self._pruning = None
        pruned = self._presence.prune()
        self._unclaimed.earlier.turn_over()
        if pruned:
            _log.debug("forgot the presence of {n} identities gone elsewhere", n=pruned)
        self._schedule_prune()

    def _schedule_prune(self) -> None:
        if self._pruning is None and not self._stopping:
            every = max(1.0, self._config.downstream.offline_ttl)
            self._pruning = self._clock.callLater(every, self._prune_tick)

    def shutting_down(self) -> None:
        """The gateway stops: the prune timer is not started again."""
        self._stopping = True

    def goodbye(self) -> tuple[str, bytes]:
        """The gateway's offline presence, to publish when stopping."""
        topic, payload = self._presence.gateway(False)
        self.handover = self._presence.peers()
        # Says whether a peer's catch-all answers from now on: the next run
        # reads it (retained) to know who answered what its session kept.
        payload = payload[:-1] + b', "Handover": ' + (b"true}" if self.handover else b"false}")
        if self.handover:
            self._goodbye = payload
        return topic, payload

    def gateway_received(self, topic: str, payload: bytes) -> bool:
        """
        A gateway presence on the main connection: the echo of our announce
        (the retained presence is read), of our goodbye (True: another
        instance's catch-all answers from now on), or another instance's.
        """
        if self._unclaimed.echo(payload):
            return False
        if self._goodbye is not None and payload == self._goodbye:
            return True
        try:
            body = json.loads(payload)
            online, run = body["Online"], body.get("Run")
        except (ValueError, KeyError, TypeError):
            return False
        if topic != self._own_topic:
            # Who is up, as this connection reads it (the catch-all's reads
            # it in its own order): does a peer's catch-all answer?
            self._unclaimed.peers[topic] = online is True
        elif run == self._presence.run:
            # This run's own will (the broker took it for dead: a stall past
            # 1.5 x keepalive, or a broker restart), or an earlier presence of
            # it: until our presence is routed again, peers answer for us.
            self._unclaimed.gone(online is False and not self._stopping)
        elif online is False and self._unclaimed.earlier.replayed:
            # An earlier run's will landed after our presence (the broker
            # noticed that run late): we are up, say so again.
            if not self._stopping:
                self._say_up()
        elif online is False:
            # An earlier run's will or goodbye (a resumed session's replay):
            # peers knew that run gone from here on in the routing order.
            self._unclaimed.old_run_gone = True
            # Its goodbye handed over (read retained, after what the session
            # kept, which was all routed after it): a peer answered that.
            self._unclaimed.handed_over = body.get("Handover") is True
        if not self._unclaimed.reads_gateways:
            self._presence.gateway_received(topic, payload)
        return False

    def leave(self) -> None:
        """The gateway stops, after its goodbye: no more pruning."""
        if self._pruning is not None and self._pruning.active():
            self._pruning.cancel()
        self._pruning = None
