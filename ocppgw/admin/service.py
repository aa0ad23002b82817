# -*- test-case-name: tests.integration.test_admin_api -*-
"""
The admin endpoint as a Twisted service, and what it reads of the gateway:
the listeners (listening or not), the MQTT client, the sessions.

:class:`Gateway` answers ``GET /api/v1/gateway`` and ``/healthz``; the
routes are :mod:`ocppgw.admin.api`'s.  With ``[gateway] workers`` above 1
each worker serves this on a socket of its own and the supervisor answers
for all of them (:mod:`ocppgw.admin.fanout`).
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site

from ocppgw import __version__
from ocppgw.admin.api import resource
from ocppgw.admin.calls import Calls
from ocppgw.admin.metrics import State
from ocppgw.config import ConfigError
from ocppgw.listener.listening import Listening
from ocppgw.loop import refuse_start
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.speedups import speedups

if TYPE_CHECKING:
    from ocppgw.admin.records import Recorder
    from ocppgw.config.model import AdminConfig
    from ocppgw.service import GatewayService

_log = Logger()


class Gateway:
    """The gateway as the admin endpoint reads it."""

    def __init__(self, gateway: GatewayService, recorder: Recorder, clock: IReactorTime) -> None:
        self.service = gateway
        self.config = gateway.config
        self.router = gateway.router
        #: The sessions of this gateway, connected or in their grace period.
        self.sessions = gateway.router.directory
        self.mqtt = gateway.mqtt
        self.recorder = recorder
        self._clock = clock
        self.started = clock.seconds()

    def _listening(self) -> dict[str, Any]:
        """Listener name -> its endpoint, which records its port or why it has none."""
        return {
            (service.name or "").removeprefix("listener:"): getattr(service, "endpoint", None)
            for service in self.service.listeners
        }

    def state(self) -> State:
        """What the metrics gauges read at scrape time."""

        def connected() -> dict[tuple[str, str], int]:
            counts: dict[tuple[str, str], int] = {}
            for session in self.sessions.connected():
                record = self.recorder.records.get(session.identity)
                key = (session.version, record.listener if record else "")
                counts[key] = counts.get(key, 0) + 1
            return counts

        return State(
            connected=connected,
            queued=lambda: sum(s.queued() for s in self.sessions.all()),
            in_grace=self.sessions.in_grace,
            mqtt_connected=lambda: bool(self.mqtt.connected),
            buffered=self.mqtt.buffered,
            unacknowledged=self.mqtt.unacknowledged,
        )

    def listeners(self) -> list[dict[str, Any]]:
        out = []
        listening = self._listening()
        for listener in self.config.listeners:
            endpoint = listening.get(listener.name)
            port = getattr(endpoint, "port", None)
            out.append(
                {
                    "name": listener.name,
                    "endpoint": listener.endpoint,
                    "security_profile": listener.security_profile,
                    "listening": port is not None and bool(getattr(port, "connected", True)),
                    "port": port.getHost().port if port is not None else None,
                    "error": getattr(endpoint, "error", None),
                }
            )
        return out

    def info(self) -> dict[str, Any]:
        """``GET /api/v1/gateway``."""
        now = self._clock.seconds()
        return {
            "gateway_id": self.config.gateway_id,
            "version": __version__,
            "started_at": rfc3339(self.started),
            "uptime_seconds": round(now - self.started, 3),
            "listeners": self.listeners(),
            "workers": 1,
            "charge_points": {
                "connected": len(self.sessions.connected()),
                "grace": self.sessions.in_grace(),
                # What other instances' presence said, kept until pruned.
                "remembered_elsewhere": self.router.remembered_elsewhere(),
            },
            "mqtt": {
                "broker": f"{self.config.mqtt.host}:{self.config.mqtt.port}",
                "connected": bool(self.mqtt.connected),
                "buffered_publishes": self.mqtt.buffered(),
                "unacknowledged_publishes": self.mqtt.unacknowledged(),
            },
            # The optional speed-ups (docs/design.md): which run, and why not.
            "speedups": [dataclasses.asdict(s) for s in speedups()],
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``GET /healthz``: healthy while every listener listens and the broker is connected."""
        reasons = [
            f"listener {li['name']} is not listening" + (f": {li['error']}" if li["error"] else "")
            for li in self.listeners()
            if not li["listening"]
        ]
        if not self.mqtt.connected:
            reasons.append("not connected to the MQTT broker")
        body: dict[str, Any] = {
            "status": "unavailable" if reasons else "ok",
            "gateway_id": self.config.gateway_id,
            "mqtt_connected": bool(self.mqtt.connected),
            "listeners": {li["name"]: li["listening"] for li in self.listeners()},
        }
        if reasons:
            body["reasons"] = reasons
        return not reasons, body


class QuietSite(Site):
    """No access log line per request: Prometheus scrapes every few seconds."""

    def log(self, request: Any) -> None:
        pass


def serve(parent: MultiService, config: AdminConfig, resource: Any, reactor: Any) -> None:
    """
    ``resource`` on ``[admin] endpoint``, a child service of ``parent``.

    A port it cannot listen on stops the gateway (exit 1), named
    (:func:`ocppgw.loop.refuse_start`).

    :raises ConfigError: the endpoint string is not usable.
    """
    assert config.endpoint is not None
    if config.local is None and config.token is None:
        _log.warn(
            "[admin] token is not set: every /api/ route answers 401"
            + (" and so does /metrics" if config.metrics_auth else "")
        )
    try:
        listening = Listening(
            reactor,
            "[admin] endpoint",
            config.endpoint,
            QuietSite(resource),
            partial(refuse_start, reactor),
            # endpoint = local: the socket in a directory only this user may enter.
            directory=None if config.local is None else os.path.dirname(config.local),
        )
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(
            f"[admin] endpoint: not a usable endpoint string {config.endpoint!r}: {e}"
        ) from None
    listening.setName("admin")
    listening.setServiceParent(parent)


class AdminService(MultiService):
    """``[admin] endpoint``: the HTTP API, /metrics and /healthz."""

    def __init__(self, gateway: GatewayService, recorder: Recorder, clock: Any) -> None:
        super().__init__()
        config = gateway.config.admin
        assert config.endpoint is not None
        self.gateway = Gateway(gateway, recorder, clock)
        self.calls = Calls(gateway.router, clock)
        serve(self, config, resource(self.gateway, self.calls, recorder, config), clock)

    def stopService(self) -> Any:
        self.calls.stop()
        return super().stopService()
