"""
The gateway as a Twisted service: broker, MQTT client, router and listeners.

:func:`build` turns a validated :class:`~ocppgw.config.Config` into a
:class:`GatewayService`.  It starts the embedded broker (if any), the MQTT
client and the listeners, and stops in the order that loses nothing
(SIGTERM/SIGINT): stop accepting, close every charge point with 1001 (which
publishes its offline presence), wait (bounded by ``[gateway]
shutdown_timeout``) for outstanding PUBACKs, disconnect from the broker, and
stop the embedded broker last.

SIGHUP reloads the listeners' certificates and the credentials file without
dropping a connection: new handshakes use the new files, and a file that
cannot be used is logged and the old one kept.
"""

from __future__ import annotations

import signal
from typing import Any

from autobahn import websocket as autobahn_websocket
from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ocppgw.config import Config, ConfigError
from ocppgw.connection import CLOSE_GOING_AWAY, OCPPServerFactory, OCPPServerProtocol
from ocppgw.listener.admission import Gatekeeper
from ocppgw.listener.credentials import Credentials, CredentialsError
from ocppgw.listener.ratelimit import LoginLimiter
from ocppgw.listener.tls import ForwardedCertificates, ServerTLS, TLSConfigError, TLSListenerFactory
from ocppgw.mqtt.broker import EmbeddedBroker, find_mosquitto
from ocppgw.mqtt.client import MQTTClient
from ocppgw.ocpp.validation import SchemaError, Validator
from ocppgw.ocpp.validation import Violation as SchemaViolation
from ocppgw.ocpp.versions import ErrorKind
from ocppgw.router.routing import Router
from ocppgw.session.rules import Session, SessionOptions, Validate, Violation

_log = Logger()


def session_options(config: Config) -> SessionOptions:
    """The session rules the configuration asks for."""
    validate_upstream: Validate | None = None
    validate_downstream: Validate | None = None
    if config.validation_mode != "off":
        try:
            validator = Validator(config.schema_dir)
            if config.schema_dir is not None:
                validator.check_all()
        except (ValueError, SchemaError) as e:
            raise ConfigError(f"[validation] schema_dir: {e}") from None

        def validate(
            version: str, action: str, request: bool, payload: dict[str, Any]
        ) -> Violation | None:
            try:
                return validator.validate(version, action, request, payload)
            except SchemaError as e:
                # Only what shows while validating (an unresolvable $ref):
                # the peer gets InternalError, never a dropped connection.
                _log.error("schema unusable: {e}", e=e)
                return SchemaViolation(ErrorKind.INTERNAL, f"gateway schema unusable for {action}")

        if config.validation_mode in ("all", "upstream"):
            validate_upstream = validate
        if config.validation_mode in ("all", "dnstream"):
            validate_downstream = validate
    return SessionOptions(
        upstream_timeout=config.upstream.awaiting_timeout,
        downstream_timeout=config.downstream.awaiting_timeout,
        max_queue=config.downstream.max_queue,
        strict=config.strict,
        local_heartbeat=config.local_heartbeat,
        validate_upstream=validate_upstream,
        validate_downstream=validate_downstream,
    )


class Gateway:
    """Creates and retires sessions; what every listener's protocols share."""

    def __init__(self, config: Config, reactor: Any, mqtt: MQTTClient) -> None:
        self.config = config
        self.reactor = reactor
        self.mqtt = mqtt
        self.router = Router(config, mqtt, reactor)
        self.options = session_options(config)

    def open_session(self, identity: str, version: str, connection: OCPPServerProtocol) -> Session:
        session = Session(identity, version, connection, self.router, self.reactor, self.options)
        self.router.attach(session, connection.peer or "")
        _log.info(
            "{cid}: connected ({version}) from {peer}",
            cid=identity,
            version=version,
            peer=connection.peer,
        )
        return session

    def close_session(self, session: Session) -> None:
        if session.connected:
            session.connection_lost()
        self.router.detach(session)
        _log.info("{cid}: disconnected", cid=session.identity)


class GatewayService(MultiService):
    """The whole gateway; stops in the order that loses nothing."""

    def __init__(
        self,
        gateway: Gateway,
        broker: EmbeddedBroker | None,
        listeners: list[Service],
        reloadable: list[Any] | None = None,
    ) -> None:
        super().__init__()
        self.gateway = gateway
        self.broker = broker
        self.listeners = listeners
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
        self.gateway.reactor.callFromThread(self.reload)

    def startService(self) -> None:
        Service.startService(self)
        if hasattr(signal, "SIGHUP") and self.reloadable:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        if self.broker is not None:
            self.broker.startService()
        self.gateway.mqtt.start()
        for listener in self.listeners:
            listener.startService()

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        gateway = self.gateway
        yield DeferredList([Deferred.fromCoroutine(_stop(li)) for li in self.listeners])
        for session in gateway.router.connected():
            session.connection.close(CLOSE_GOING_AWAY, "gateway shutting down")
        clock = gateway.reactor
        deadline = clock.seconds() + gateway.config.shutdown_timeout
        while clock.seconds() < deadline and (
            gateway.router.connected() or gateway.mqtt.unacknowledged()
        ):
            if not gateway.mqtt.connected and not gateway.router.connected():
                break
            yield deferLater(clock, 0.05, lambda: None)
        left = gateway.mqtt.unacknowledged()
        if left:
            _log.warn("stopping with {n} publishes not acknowledged by the broker", n=left)
        topic, payload = gateway.router.gateway_presence(False)
        if gateway.mqtt.connected:
            gateway.mqtt.publish(topic, payload, 1, retain=True)
            yield deferLater(clock, 0.05, lambda: None)
        yield gateway.mqtt.stop()
        if self.broker is not None:
            yield self.broker.stopService()
        # twistd re-raises SIGTERM/SIGINT on itself after the reactor stops
        # (exit status 143/130). This stop was orderly and complete, so the
        # gateway exits 0, as supervisors expect of a clean shutdown.
        if getattr(gateway.reactor, "_exitSignal", None) is not None:
            gateway.reactor._exitSignal = None


async def _stop(service: Service) -> None:
    result = service.stopService()
    if isinstance(result, Deferred):
        await result


def build(config: Config, reactor: Any) -> GatewayService:
    """
    The whole gateway for ``config``.

    :raises ConfigError: for what only shows when building (credentials file
        contents, a missing mosquitto binary).
    """
    broker = None
    if config.mqtt.embedded:
        try:
            binary = find_mosquitto(config.mqtt.mosquitto)
        except Exception as e:
            raise ConfigError(str(e)) from None
        broker = EmbeddedBroker(reactor, binary, config.mqtt.host, config.mqtt.port)

    credentials = None
    if config.credentials is not None:
        try:
            credentials = Credentials(config.credentials)
        except CredentialsError as e:
            raise ConfigError(f"[auth] credentials: {e}") from None

    try:
        client = MQTTClient(config.mqtt, reactor)
    except TLSConfigError as e:
        raise ConfigError(f"[mqtt] tls_ca/tls_cert/tls_key: {e}") from None
    gateway = Gateway(config, reactor, client)
    client.will = gateway.router.gateway_presence(False)

    def announce() -> None:
        topic, payload = gateway.router.gateway_presence(True)
        client.publish(topic, payload, 1, retain=True)

    client.on_connected = announce
    limits = config.login_limits
    limiter = LoginLimiter(
        reactor, limits.per_address, limits.per_identity, limits.window, limits.table_size
    )
    reloadable: list[Any] = [_Named("credentials", credentials)] if credentials else []
    listeners: list[Service] = []
    for listener in config.listeners:
        if listener.security_profile == 0:
            _log.warn(
                "[listener:{name}] security_profile = 0: any client may connect as any "
                "charge point, without a password",
                name=listener.name,
            )
        section = f"[listener:{listener.name}]"
        tls = None
        forwarded = None
        try:
            if listener.tls_cert:
                tls = ServerTLS(listener.name, listener.tls_cert, listener.tls_key, listener.tls_ca)
                reloadable.append(_Named(f"{section} certificates", tls))
            elif listener.tls_ca is not None:
                forwarded = ForwardedCertificates(listener.tls_ca, reactor)
                reloadable.append(_Named(f"{section} tls_ca", forwarded))
        except TLSConfigError as e:
            raise ConfigError(f"{section} tls_cert/tls_key/tls_ca: {e}") from None
        factory = OCPPServerFactory(
            listener,
            config.versions,
            credentials,
            gateway.open_session,
            gateway.close_session,
            ping_interval=listener.ping_interval,
            pong_timeout=listener.pong_timeout,
            gatekeeper=Gatekeeper(listener, credentials, limiter, forwarded),
            over_tls=tls is not None,
        )
        wrapped: Any = factory if tls is None else TLSListenerFactory(tls, factory)
        try:
            service = strports.service(listener.endpoint, wrapped, reactor=reactor)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(
                f"[listener:{listener.name}] endpoint: not a usable endpoint string "
                f"{listener.endpoint!r}: {e}"
            ) from None
        service.setName(f"listener:{listener.name}")
        listeners.append(service)
    _log.info(
        "Autobahn NVX acceleration: {nvx}",
        nvx="on" if autobahn_websocket.USES_NVX else "off (pure Python, slower)",
    )
    return GatewayService(gateway, broker, listeners, reloadable)


class _Named:
    """Something SIGHUP reloads, named for the log."""

    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self._target = target

    def reload(self) -> None:
        self._target.reload()

    def __str__(self) -> str:
        return self.name
