# -*- test-case-name: tests.integration.test_instances,tests.unit.listener.test_tls -*-
"""
The gateway as a Twisted service: start and stop order, SIGHUP, shutdown.

It starts the embedded broker (if any), the MQTT client and the listeners,
and stops in the order that loses nothing (SIGTERM/SIGINT): stop accepting;
answer every downstream CALL queued or in flight with a Shutdown envelope;
give the charge points' CALLs already published until ``[gateway]
shutdown_timeout`` for the backend's answers; let the charge points go as
``shutdown_close`` says (1001, 1012, or a TCP close), which publishes their
offline presence; wait (within the same deadline) for outstanding PUBACKs;
publish the gateway's goodbye, answer what was routed before it, leave
what was routed after it to another instance's catch-all, unsubscribe;
disconnect from the broker, and stop the embedded broker last.  The exit
status is 0 only when every publish was acknowledged and no error envelope
is still owed (one whose publish failed, retried every second): both are
waited for within the same deadline, and what is left is logged in one line
with its counts.

SIGUSR1 drains: stop accepting, close the charge points at most
``drain_rate`` a second, and stop when none is left.

SIGHUP reloads the listeners' certificates, the credentials file and the
HTTP authentication headers (and clears its cache) without dropping a
connection: new handshakes use the new files, and a file that
cannot be used is logged and the old one kept.  New revocation lists
(``tls_crl``) close only the connections whose certificate they revoke.

What is built, from which configuration, is :mod:`ocppgw.assemble`'s.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from ocppgw import speedups
from ocppgw.connection import OCPPServerProtocol
from ocppgw.forward.address import CredentialsFileError
from ocppgw.interfaces import CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART
from ocppgw.listener.credentials import CredentialsError
from ocppgw.listener.crl import CRLError
from ocppgw.listener.tls import TLSConfigError
from ocppgw.loop import EXIT, Exit
from ocppgw.router.journal import Journal
from ocppgw.session.lifecycle import Phase

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

    #: Told how the stop went: the process's exit status follows it.
    exit: Exit = EXIT

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
        journal: Journal | None = None,
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
        #: The journal of the backend CALLs this process holds, if kept.
        self.journal = journal
        #: What SIGHUP re-reads: objects with a ``reload()`` and a ``name``.
        self.reloadable = reloadable or []
        self._previous_sighup: Any = None
        self._previous_sigusr1: Any = None
        self._draining: LoopingCall | None = None
        self._listeners_stopped = False
        if broker is not None:
            broker.setServiceParent(self)
        for listener in listeners:
            listener.setServiceParent(self)

    def reload(self) -> None:
        """Re-read certificates and credentials; keep what fails, and say so."""
        for item in self.reloadable:
            try:
                item.reload()
            except (TLSConfigError, CRLError, CredentialsError, CredentialsFileError, OSError) as e:
                _log.error("reload of {what} failed, keeping the old one: {e}", what=item, e=e)
            else:
                _log.info("reloaded {what}", what=item)

    def _sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def _sigusr1(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.drain)

    def startService(self) -> None:
        Service.startService(self)
        # One line for each speed-up that steps aside (docs/design.md, Speed-ups).
        speedups.report(lambda line: _log.warn("{line}", line=line))
        if hasattr(signal, "SIGHUP") and self.reloadable:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        if hasattr(signal, "SIGUSR1"):
            self._previous_sigusr1 = signal.signal(signal.SIGUSR1, self._sigusr1)
        if self.journal is not None:
            self._recover(self.journal)
        if self.broker is not None:
            self.broker.startService()
            # Connect once the embedded mosquitto listens: not into a refusal.
            self.broker.listening().addCallback(lambda _: self._connect())
        else:
            self._connect()
        for listener in self.listeners:
            listener.startService()

    def _connect(self) -> None:
        """Start the MQTT connections (unless the gateway stopped meanwhile)."""
        if not self.running:
            return
        self.mqtt.start()
        if self.catch_all is not None:
            self.catch_all.start()

    def _recover(self, journal: Journal) -> None:
        """Open the journal; answer what a killed previous run held, once MQTT is up."""
        try:
            left = journal.start()
        except OSError as e:
            _log.error(
                "[gateway] journal: {path}: {e}; backend CALLs this process holds when it is "
                "killed will not be answered",
                path=journal.path,
                e=e.strerror or e,
            )
            return
        if left:
            _log.warn(
                "the previous run held {n} backend CALLs it did not answer; answering them",
                n=len(left),
            )
            when = self.mqtt.when_connected()
            when.addCallback(lambda _: journal.answer_recovered(left, self.router.publish))

    def _restore_signals(self) -> None:
        for name, attr in (("SIGHUP", "_previous_sighup"), ("SIGUSR1", "_previous_sigusr1")):
            previous = getattr(self, attr)
            if previous is not None:
                signal.signal(getattr(signal, name), previous)
                setattr(self, attr, None)

    # --- SIGUSR1: drain ---

    @inlineCallbacks
    def drain(self) -> Any:
        """
        Stop accepting, close the connected charge points at most ``[gateway]
        drain_rate`` a second (1001, so they reconnect to another instance),
        and stop the gateway when none is left.
        """
        if self._draining is not None or not self.running:
            return
        rate = self.config.drain_rate
        _log.info(
            "draining: closing {n} charge points, {rate}/s",
            n=len(self.router.directory.connected()),
            rate=rate,
        )
        yield DeferredList([Deferred.fromCoroutine(_stop(li)) for li in self.listeners])
        self._listeners_stopped = True
        interval = max(1.0 / rate, 0.05)
        batch = max(1, round(rate * interval))
        self._draining = LoopingCall(self._drain_some, batch)
        self._draining.clock = self.reactor
        yield self._draining.start(interval, now=True)
        _log.info("drained: no charge point left; stopping")
        self.reactor.stop()

    def _drain_some(self, batch: int) -> None:
        sessions = self.router.directory.connected()
        if not sessions:
            assert self._draining is not None
            self._draining.stop()
            return
        for session in [s for s in sessions if s.phase is Phase.OPEN][:batch]:
            session.connection.close(CLOSE_GOING_AWAY, "gateway draining")

    # --- SIGTERM/SIGINT ---

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        self._restore_signals()
        if self._draining is not None and self._draining.running:
            self._draining.stop()
        router, mqtt, clock = self.router, self.mqtt, self.reactor
        sessions = router.directory
        deadline = clock.seconds() + self.config.shutdown_timeout
        if self.broker is not None:
            self.broker.hold()  # stopping: a broker that dies now stays dead
        if self.catch_all is not None:
            # Leave the catch-all group first: the others answer for absent ones.
            router.catch_all_leaving()
            yield self.catch_all.stop()
        if not self._listeners_stopped:
            yield DeferredList([Deferred.fromCoroutine(_stop(li)) for li in self.listeners])
        # Downstream CALLs get their answer now; upstream CALLs already
        # published get until the deadline for the backend's answer.
        router.shutting_down("gateway shutting down; not sent")
        waiting = sum(s.awaiting_backend() for s in sessions.connected()) if mqtt.connected else 0
        if waiting:
            # Said at once: the stop may pause here until the deadline.
            _log.info(
                "stopping: waiting up to {seconds:.1f} s for the backend's answers "
                "to {n} charge point CALLs",
                seconds=max(0.0, deadline - clock.seconds()),
                n=waiting,
            )
        yield self._until(
            deadline,
            lambda: mqtt.connected and any(s.awaiting_backend() for s in sessions.connected()),
        )
        for session in sessions.connected():
            _let_go(session.connection, self.config.shutdown_close)

        def publishing() -> bool:
            # Error envelopes whose publish failed (owed) are published again
            # every second: they are waited for as the unacknowledged ones are.
            return bool(mqtt.unacknowledged() or router.owed())

        yield self._until(
            deadline,
            lambda: (
                bool(sessions.connected() or publishing())
                and bool(mqtt.connected or sessions.connected())
            ),
        )
        if mqtt.connected:
            # Our goodbye: downstream messages routed before it are answered
            # here (Shutdown), those after it by another instance's catch-all
            # (Offline); its echo tells which is which.  Then unsubscribe, so
            # a kept MQTT session queues nothing for a gateway that left.
            topic, payload = router.goodbye()
            done = mqtt.publish(topic, payload, 1, retain=True)
            done.addErrback(lambda f: None)
            yield self._until(
                clock.seconds() + 1.0, lambda: not (done.called and router.said_goodbye())
            )
        router.leave()
        # What leaving decided (catch-all copies and held messages answered
        # now) is published like the rest: waited for until the deadline.
        yield self._until(deadline, lambda: mqtt.connected and publishing())
        # Counted before the client stops (which fails what is unacknowledged).
        left, owed = mqtt.unacknowledged(), router.owed()
        yield mqtt.stop()
        if self.journal is not None:
            self.journal.stop()
        if self.broker is not None:
            yield self.broker.stopService()
        if left or owed:
            _log.warn(
                "stopping with {n} publishes not acknowledged by the broker and "
                "{owed} error envelopes not published",
                n=left,
                owed=owed,
            )
        self.exit.stopped(complete=not (left or owed))

    @inlineCallbacks
    def _until(self, deadline: float, waiting: Callable[[], bool]) -> Any:
        """Wait while ``waiting()`` holds, until ``deadline`` at the latest."""
        while self.reactor.seconds() < deadline and waiting():
            yield deferLater(self.reactor, 0.05, lambda: None)


def _let_go(connection: Any, how: str) -> None:
    """Close one charge point as ``[gateway] shutdown_close`` says."""
    if how == "abort" and isinstance(connection, OCPPServerProtocol):
        # Some chargers never reconnect after a close frame: TCP close only.
        connection.dropConnection(abort=True)
    elif how == "service-restart":
        connection.close(CLOSE_SERVICE_RESTART, "gateway restarting")
    else:
        connection.close(CLOSE_GOING_AWAY, "gateway shutting down")


async def _stop(service: Service) -> None:
    result = service.stopService()
    if isinstance(result, Deferred):
        await result
