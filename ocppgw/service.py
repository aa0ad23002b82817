"""
The gateway as a Twisted service: broker, MQTT client, router and listeners.

:func:`build` turns a validated :class:`~ocppgw.config.Config` into a
``MultiService``.  Start order: the embedded broker (if any), the MQTT client,
then the listeners; stop order is the reverse, so charge points are closed
before the MQTT connection.
"""

from __future__ import annotations

from typing import Any

from autobahn import websocket as autobahn_websocket
from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ocppgw.auth import Credentials, CredentialsError
from ocppgw.broker import EmbeddedBroker, find_mosquitto
from ocppgw.config import Config, ConfigError
from ocppgw.mqtt import MQTTClient
from ocppgw.router import Router
from ocppgw.session import Session, SessionOptions
from ocppgw.websocket import CLOSE_GOING_AWAY, CLOSE_NORMAL, OCPPServerFactory, OCPPServerProtocol

_log = Logger()


class Gateway:
    """Creates and retires sessions; what every listener's protocols share."""

    def __init__(self, config: Config, reactor: Any, mqtt: MQTTClient) -> None:
        self.config = config
        self.reactor = reactor
        self.mqtt = mqtt
        self.router = Router(config, mqtt)
        self.options = SessionOptions()

    def open_session(self, identity: str, version: str, connection: OCPPServerProtocol) -> Session:
        session = Session(identity, version, connection, self.router, self.reactor, self.options)
        old = self.router.attach(session)
        if old is not None:
            # A reconnecting charge point wins: close the old socket.
            _log.info("{cid}: new connection replaces the old one", cid=identity)
            old.connection.close(CLOSE_NORMAL, "replaced")
            old.connection_lost()
        _log.info(
            "{cid}: connected ({version}) from {peer}",
            cid=identity,
            version=version,
            peer=connection.peer,
        )
        return session

    def close_session(self, session: Session) -> None:
        session.connection_lost()
        self.router.detach(session)
        _log.info("{cid}: disconnected", cid=session.identity)


class _MQTTService(Service):
    def __init__(self, client: MQTTClient) -> None:
        self.client = client

    def startService(self) -> None:
        super().startService()
        self.client.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.client.stop()


class _Sessions(Service):
    """Closes every charge point connection (1001, going away) on stop."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def stopService(self) -> None:
        super().stopService()
        for session in self.gateway.router.sessions():
            session.connection.close(CLOSE_GOING_AWAY, "gateway shutting down")


def build(config: Config, reactor: Any) -> MultiService:
    """
    The whole gateway for ``config``.

    :raises ConfigError: for what only shows when building (credentials file
        contents, a missing mosquitto binary).
    """
    top = MultiService()
    if config.mqtt.embedded:
        try:
            binary = find_mosquitto(config.mqtt.mosquitto)
        except Exception as e:
            raise ConfigError(str(e)) from None
        EmbeddedBroker(reactor, binary, config.mqtt.host, config.mqtt.port).setServiceParent(top)

    credentials = None
    if config.credentials is not None:
        try:
            credentials = Credentials(config.credentials)
        except CredentialsError as e:
            raise ConfigError(f"[auth] credentials: {e}") from None

    client = MQTTClient(config.mqtt, reactor)
    _MQTTService(client).setServiceParent(top)
    gateway = Gateway(config, reactor, client)
    top.gateway = gateway  # type: ignore[attr-defined]
    for listener in config.listeners:
        if listener.security_profile == 0:
            _log.warn(
                "[listener:{name}] security_profile = 0: any client may connect as any "
                "charge point, without a password",
                name=listener.name,
            )
        factory = OCPPServerFactory(
            listener,
            config.versions,
            credentials,
            gateway.open_session,
            gateway.close_session,
        )
        try:
            service = strports.service(listener.endpoint, factory, reactor=reactor)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(
                f"[listener:{listener.name}] endpoint: not a usable endpoint string "
                f"{listener.endpoint!r}: {e}"
            ) from None
        service.setName(f"listener:{listener.name}")
        service.setServiceParent(top)
    _Sessions(gateway).setServiceParent(top)
    _log.info(
        "Autobahn NVX acceleration: {nvx}",
        nvx="on" if autobahn_websocket.USES_NVX else "off (pure Python, slower)",
    )
    return top
