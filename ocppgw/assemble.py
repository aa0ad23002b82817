# -*- test-case-name: tests.unit.session.test_session_rules,tests.unit.session.test_lifecycle -*-
"""
Wires the stages from the configuration: broker, MQTT client, router
(with its session directory), listeners, and the service that starts and stops them.

:func:`build` turns a validated :class:`~ocppgw.config.Config` into a
:class:`~ocppgw.service.GatewayService`.  What only shows when building
(credentials file contents, certificates, a missing mosquitto binary, an
unusable endpoint string) is raised as :class:`~ocppgw.config.ConfigError`,
naming the section and key.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial
from typing import Any

from autobahn import websocket as autobahn_websocket
from twisted.application.service import MultiService, Service
from twisted.logger import Logger

from ocppgw.admin.flight import FlightRecorder
from ocppgw.admin.metrics import Metrics
from ocppgw.admin.records import Recorder
from ocppgw.admin.release import heap_trimmer
from ocppgw.admin.service import AdminService
from ocppgw.config import Config, ConfigError
from ocppgw.forward.address import CredentialsFileError
from ocppgw.forward.forwarder import Forwarder
from ocppgw.forward.tap import Tap
from ocppgw.interfaces import NO_EVENTS, IGatewayEvents
from ocppgw.listener.accepting import accepting_endpoint
from ocppgw.listener.admission import Gatekeeper
from ocppgw.listener.credentials import Credentials, CredentialsError
from ocppgw.listener.crl import CRLError
from ocppgw.listener.factory import OCPPServerFactory
from ocppgw.listener.httpauth import HTTPAuth
from ocppgw.listener.listening import Listening
from ocppgw.listener.ratelimit import LoginLimiter
from ocppgw.listener.throttle import handshake_rate
from ocppgw.listener.tls import ForwardedCertificates, ServerTLS, TLSConfigError, TLSListenerFactory
from ocppgw.loop import refuse_start
from ocppgw.mqtt.broker import EmbeddedBroker, embedded_broker
from ocppgw.mqtt.broker_access import BrokerAccessError
from ocppgw.mqtt.client import MQTTClient
from ocppgw.mqtt.tls import BrokerTLSError
from ocppgw.ocpp.validation import SchemaError, Validator
from ocppgw.ocpp.validation import Violation as SchemaViolation
from ocppgw.ocpp.versions import ErrorKind
from ocppgw.router.journal import Journal
from ocppgw.router.routing import Router
from ocppgw.service import GatewayService, Reloadable
from ocppgw.session.rules import SessionOptions, Validate, Violation
from ocppgw.workers.sockets import ReusePortListener, tcp_address

_log = Logger()


def session_options(config: Config, events: IGatewayEvents = NO_EVENTS) -> SessionOptions:
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

        fast_checks = validator.fast_checks

        def counted(upstream: bool) -> Validate:
            def check(
                version: str, action: str, request: bool, payload: dict[str, Any]
            ) -> Violation | None:
                # A valid payload of a schema used before: one dict lookup
                # and the compiled check; anything else goes the whole way.
                fast = fast_checks.get((version, action, request))
                if fast is not None and fast(payload):
                    return None
                found = validate(version, action, request, payload)
                if found is not None:
                    events.validation_failed(action, upstream)
                return found

            return check

        if config.validation_mode in ("all", "upstream"):
            validate_upstream = counted(True)
        if config.validation_mode in ("all", "dnstream"):
            validate_downstream = counted(False)
    return SessionOptions(
        upstream_timeout=config.upstream.awaiting_timeout,
        downstream_timeout=config.downstream.awaiting_timeout,
        max_queue=config.downstream.max_queue,
        offline_ttl=config.downstream.offline_ttl,
        strict=config.strict,
        local_heartbeat=config.local_heartbeat,
        local_status_notification=config.local_status_notification,
        enforce_registration=config.enforce_registration,
        validate_upstream=validate_upstream,
        validate_downstream=validate_downstream,
        events=events,
    )


def forwarders(
    config: Config, reactor: Any, mqtt: MQTTClient, events: IGatewayEvents
) -> dict[str, Forwarder]:
    """The central system of each ``[forward:NAME]``, with its tap (issue 20)."""
    out: dict[str, Forwarder] = {}
    validate = None
    if config.forwards and config.validation_mode != "off":
        validate = Validator(config.schema_dir).validate
    for forward in config.forwards:
        tap = None
        if forward.tap_topic is not None:
            tap = Tap(
                mqtt,
                config.mqtt.qos,
                forward.tap_topic,
                forward.tap_codec,
                config.gateway_id,
                reactor,
            )
        try:
            made = Forwarder(forward, reactor, tap, validate, events=events)
        except CredentialsFileError as e:
            raise ConfigError(f"[forward:{forward.name}] credentials: {e}") from None
        except Exception as e:  # an unreadable CA, certificate or key file
            raise ConfigError(
                f"[forward:{forward.name}] tls_ca/tls_cert/tls_key: {str(e)[:200]}"
            ) from None
        warning = made.plain_auth_warning()
        if warning is not None:
            _log.warn("{warning}", warning=warning)
        out[forward.name] = made
    return out


def operate(config: Config, reactor: Any) -> MultiService:
    """
    The gateway and what operates it: its events recorded (metrics, the log
    lines of connects, disconnects, takeovers and gateway errors), and the
    admin endpoint when ``[admin] endpoint`` is set.  The admin endpoint
    starts after the gateway and stops before it.
    """
    flight = FlightRecorder(config.recorder, reactor, heap_trimmer())
    recorder = Recorder(reactor, Metrics(), flight)
    gateway = build(config, reactor, recorder)
    top = MultiService()
    gateway.setServiceParent(top)
    if config.admin.endpoint is not None:
        admin = AdminService(gateway, recorder, reactor)
        recorder.metrics.watch(admin.gateway.state())
        admin.setServiceParent(top)
    return top


def build(config: Config, reactor: Any, events: IGatewayEvents = NO_EVENTS) -> GatewayService:
    """
    The whole gateway for ``config``.

    :raises ConfigError: for what only shows when building (credentials file
        contents, a missing mosquitto binary).
    """
    broker: EmbeddedBroker | None = None
    if config.mqtt.embedded:
        try:
            broker = embedded_broker(reactor, config.mqtt)
        except BrokerAccessError as e:
            raise ConfigError(str(e)) from None

    credentials = None
    if config.credentials is not None:
        try:
            credentials = Credentials(config.credentials)
        except CredentialsError as e:
            raise ConfigError(f"[auth] credentials: {e}") from None

    try:
        client = MQTTClient(config.mqtt, reactor)
    except BrokerTLSError as e:
        raise ConfigError(f"[mqtt] tls_ca/tls_cert/tls_key: {e}") from None
    catch_all = None
    if config.downstream.offline_group and config.mqtt.protocol == "5":
        # The shared catch-all on a sessionless connection of its own: a dead
        # instance's session must not keep receiving the group's messages.
        catch_all = MQTTClient(
            replace(config.mqtt, client_id=f"{config.mqtt.client_id}-offline", session_expiry=0),
            reactor,
        )
    router = Router(config, client, reactor, catch_all)
    router.events = events
    journal = None
    if config.journal is not None:
        # One per process: the MQTT client id is (gateway id, worker index).
        name = config.mqtt.client_id.replace("/", "_") + ".journal"
        journal = Journal(os.path.join(config.journal, name), reactor)
    options = replace(session_options(config, events), journal=journal)
    client.will = router.gateway_presence(False)

    def announce() -> None:
        events.mqtt_connected()
        router.announce()

    client.on_connected = announce
    limits = config.login_limits
    limiter = LoginLimiter(
        reactor, limits.per_address, limits.per_identity, limits.window, limits.table_size
    )
    reloadable: list[Reloadable] = [Reloadable("credentials", credentials)] if credentials else []
    http_auth = None
    if config.http_auth is not None:
        try:
            http_auth = HTTPAuth(config.http_auth, reactor, events=events)
        except (OSError, ValueError) as e:
            raise ConfigError(f"[auth] http_headers: {e}") from None
        reloadable.append(Reloadable("[auth] http_url cache and http_headers", http_auth))
    listeners: list[Service] = []
    forwarding = forwarders(config, reactor, client, events)
    for name, each in forwarding.items():
        if each.config.credentials:
            reloadable.append(Reloadable(f"[forward:{name}] credentials", each))
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
                tls = ServerTLS(
                    listener.name,
                    listener.tls_cert,
                    listener.tls_key,
                    listener.tls_ca,
                    listener.tls_crl,
                    listener.tls_crl_expired,
                    reactor.seconds,
                )
                reloadable.append(Reloadable(f"{section} certificates", tls))
                if tls.revocation is not None:
                    reloadable.append(Reloadable(f"{section} tls_crl", tls.revocation))
            elif listener.tls_ca is not None:
                forwarded = ForwardedCertificates(listener.tls_ca, reactor)
                reloadable.append(Reloadable(f"{section} tls_ca", forwarded))
        except TLSConfigError as e:
            raise ConfigError(f"{section} tls_cert/tls_key/tls_ca: {e}") from None
        except CRLError as e:
            raise ConfigError(f"{section} tls_crl: {e}") from None
        open_session: Any = partial(router.directory.open, listener=listener, options=options)
        close_session: Any = router.directory.close
        forwarder = None if listener.forward is None else forwarding[listener.forward]
        if forwarder is not None:
            turn = config.downstream.awaiting_timeout
            open_session = partial(forwarder.open, open_session=open_session, timeout=turn)
            close_session = partial(forwarder.close, close_session=close_session)
        factory = OCPPServerFactory(
            listener,
            config.versions,
            credentials,
            open_session,
            close_session,
            ping_interval=listener.ping_interval,
            pong_timeout=listener.pong_timeout,
            gatekeeper=Gatekeeper(listener, credentials, limiter, forwarded, http_auth),
            over_tls=tls is not None,
            forward=None if forwarder is None else forwarder.connect,
            throttle=handshake_rate(
                listener.max_handshake_rate, listener.max_handshake_burst, config.workers, reactor
            ),
        )
        factory.events = events
        wrapped: Any = factory if tls is None else TLSListenerFactory(tls, factory)
        try:
            # Refusals answered on the socket where the request is not inside TLS.
            gate = factory if tls is None and factory.throttle is not None else None
            if config.workers > 1:
                address = tcp_address(listener.endpoint)
                service: Service = ReusePortListener(reactor, address, wrapped, gate)
            else:
                # A port it cannot listen on stops the gateway (exit 1), named.
                service = Listening(
                    reactor,
                    f"{section} endpoint",
                    listener.endpoint,
                    wrapped,
                    partial(refuse_start, reactor),
                    endpoint=accepting_endpoint(reactor, listener.endpoint, gate),
                )
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
    return GatewayService(
        config, reactor, router, client, broker, listeners, reloadable, catch_all, journal
    )
