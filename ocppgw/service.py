# -*- test-case-name: tests.integration.test_instances,tests.unit.listener.test_tls -*-
"""
The gateway as a Twisted service: start and stop order, SIGHUP, shutdown.

It starts the embedded broker (if any), the MQTT client and the listeners,
and stops in the order that loses nothing (SIGTERM/SIGINT): stop accepting,
close every charge point with 1001 (which publishes its offline presence),
wait (bounded by ``[gateway] shutdown_timeout``) for outstanding PUBACKs,
disconnect from the broker, and stop the embedded broker last.

SIGHUP reloads the listeners' certificates and the credentials file without
dropping a connection: new handshakes use the new files, and a file that
cannot be used is logged and the old one kept.

What is built, from which configuration, is :mod:`ocppgw.assemble`'s.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ocppgw.connection import CLOSE_GOING_AWAY
from ocppgw.listener.credentials import CredentialsError
from ocppgw.listener.tls import TLSConfigError

if TYPE_CHECKING:
    from ocppgw.config import Config
    from ocppgw.mqtt.broker import EmbeddedBroker
    from ocppgw.mqtt.client import MQTTClient
    from ocppgw.router.routing import Router

_log = Logger()


class Reloadable:
    """Something SIGHUP reloads, named for the log."""

    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self._target = target

    def reload(self) -> None:
        self._target.reload()

    def __str__(self) -> str:
        return self.name


class GatewayService(MultiService):
    """The whole gateway; stops in the order that loses nothing."""

    def __init__(
        self,
        config: Config,
        reactor: Any,
        router: Router,
        mqtt: MQTTClient,
        broker: EmbeddedBroker | None,
        listeners: list[Service],
        reloadable: list[Reloadable] | None = None,
        catch_all: MQTTClient | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.router = router
        self.mqtt = mqtt
        self.broker = broker
        self.listeners = listeners
        #: The sessionless connection of the shared offline catch-all, if any.
        self.catch_all = catch_all
        #: What SIGHUP re-reads: objects with a ``reload()`` and a ``name``.
        self.reloadable = reloadable or []
        self._previous_sighup: Any = None
        if broker is not None:
            broker.setServiceParent(self)
        for listener in listeners:
            listener.setServiceParent(self)

    def reload(self) -> None:
        """Re-read certificates and credentials; keep what fails, and say so."""
        for item in self.reloadable:
            try:
                item.reload()
            except (TLSConfigError, CredentialsError, OSError) as e:
                _log.error("reload of {what} failed, keeping the old one: {e}", what=item, e=e)
            else:
                _log.info("reloaded {what}", what=item)

    def _sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def startService(self) -> None:
        Service.startService(self)
        if hasattr(signal, "SIGHUP") and self.reloadable:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        if self.broker is not None:
            self.broker.startService()
        self.mqtt.start()
        if self.catch_all is not None:
            self.catch_all.start()
        for listener in self.listeners:
            listener.startService()

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        router, mqtt = self.router, self.mqtt
        if self.catch_all is not None:
            # Leave the catch-all group first: the others answer for absent ones.
            yield self.catch_all.stop()
        yield DeferredList([Deferred.fromCoroutine(_stop(li)) for li in self.listeners])
        for session in router.connected():
            session.connection.close(CLOSE_GOING_AWAY, "gateway shutting down")
        clock = self.reactor
        deadline = clock.seconds() + self.config.shutdown_timeout
        while clock.seconds() < deadline and (router.connected() or mqtt.unacknowledged()):
            if not mqtt.connected and not router.connected():
                break
            yield deferLater(clock, 0.05, lambda: None)
        left = mqtt.unacknowledged()
        if left:
            _log.warn("stopping with {n} publishes not acknowledged by the broker", n=left)
        topic, payload = router.gateway_presence(False)
        if mqtt.connected:
            mqtt.publish(topic, payload, 1, retain=True)
            yield deferLater(clock, 0.05, lambda: None)
        yield mqtt.stop()
        if self.broker is not None:
            yield self.broker.stopService()
        # twistd re-raises SIGTERM/SIGINT on itself after the reactor stops
        # (exit status 143/130). This stop was orderly and complete, so the
        # gateway exits 0, as supervisors expect of a clean shutdown.
        if getattr(self.reactor, "_exitSignal", None) is not None:
            self.reactor._exitSignal = None


async def _stop(service: Service) -> None:
    result = service.stopService()
    if isinstance(result, Deferred):
        await result
