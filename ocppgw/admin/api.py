# -*- test-case-name: tests.integration.test_admin_api -*-
"""
The admin HTTP routes of one gateway (docs/operations.md, "Admin API"): what each route
of :mod:`ocppgw.admin.routes`'s tree answers.

``/healthz`` is open; every ``/api/`` route and (unless ``[admin]
metrics_auth = false``) ``/metrics`` require ``Authorization: Bearer
TOKEN``, checked before anything else (:class:`~ocppgw.admin.routes.Protected`).
Every answer but ``/metrics`` is JSON, errors included: ``{"error": "what is
wrong"}``; a method a route does not have is 405.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from ocppgw.admin import messages, views
from ocppgw.admin.calls import Outcome, not_connected
from ocppgw.admin.history import select
from ocppgw.admin.routes import Handler, HTTPError, NoRoute, Route, caller, later, send, tree
from ocppgw.interfaces import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY

if TYPE_CHECKING:
    from ocppgw.admin.calls import Calls
    from ocppgw.admin.records import Recorder
    from ocppgw.config import Config
    from ocppgw.config.model import AdminConfig
    from ocppgw.router.directory import Directory


class Gateway(Protocol):
    """
    The gateway as the API reads it (:class:`ocppgw.admin.service.Gateway`,
    named here by its shape: the service builds this resource, not the reverse).
    """

    config: Config
    sessions: Directory

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def info(self) -> dict[str, Any]: ...


_log = Logger()

#: Largest request body read, in bytes.
MAX_BODY = 1024 * 1024
#: Longest wait a CALL may ask for, in seconds.
MAX_TIMEOUT = 3600.0
#: Close codes an operator may ask for (RFC 6455 §7.4.1; 3000-4999 registered/private).
_CLOSE_CODES = {CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_INTERNAL_ERROR}


def _query(request: Request) -> dict[str, str]:
    out = {}
    for key, values in (request.args or {}).items():
        name = key.decode("utf-8", "replace")
        if len(values) != 1:
            raise HTTPError(400, f"{name}: give it once")
        out[name] = values[0].decode("utf-8", "replace")
    return out


def _json_body(request: Request) -> dict[str, Any]:
    assert request.content is not None
    data = request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise HTTPError(413, f"request body larger than {MAX_BODY} bytes")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"request body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "request body must be a JSON object")
    return body


def _not_allowed(*allowed: str) -> Handler:
    def refuse(request: Request) -> bytes:
        method = (request.method or b"GET").decode("ascii", "replace")
        raise HTTPError(405, f"method {method} not allowed here; use {' or '.join(allowed)}")

    return refuse


def _route(**methods: Handler) -> Route:
    """A route of ``methods``, in the order a 405 names them."""
    return Route(methods, _not_allowed(*methods))


class Answers:
    """One gateway's answer at each admin route (:class:`ocppgw.admin.routes.Routes`)."""

    def __init__(self, gateway: Gateway, calls: Calls, recorder: Recorder) -> None:
        self._gateway = gateway
        self._calls = calls
        self._recorder = recorder
        self._default_timeout = gateway.config.downstream.awaiting_timeout
        self.nowhere = NoRoute()

    def healthz(self) -> Route:
        return _route(GET=self._health)

    def metrics(self) -> Route:
        return _route(GET=self._metrics)

    def gateway(self) -> Route:
        return _route(GET=lambda request: send(request, 200, self._gateway.info()))

    def chargepoints(self) -> Route:
        return _route(GET=self._list)

    def chargepoint(self, identity: str) -> Route:
        return _route(
            GET=lambda request: self._show(request, identity),
            DELETE=lambda request: self._kick(request, identity),
        )

    def call(self, identity: str) -> Route:
        return _route(POST=lambda request: self._call(request, identity))

    def calls(self) -> Route:
        return _route(POST=self._call_many)

    def messages(self, identity: str, lines: bool) -> Route:
        return _route(GET=lambda request: self._messages(request, identity, lines))

    # --- plumbing ---

    def _send(self, request: Request, status: int, body: dict[str, Any]) -> bytes:
        return send(request, status, body)

    def _later(self, request: Request, d: Deferred[Outcome]) -> int:
        return later(request, d.addCallback(lambda outcome: (outcome.status, outcome.body)))

    # --- routes ---

    def _health(self, request: Request) -> bytes:
        healthy, body = self._gateway.health()
        return self._send(request, 200 if healthy else 503, body)

    def _metrics(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._recorder.metrics.registry)

    def _list(self, request: Request) -> bytes:
        try:
            body = views.page(self._gateway.sessions.all(), self._recorder.records, _query(request))
        except views.QueryError as e:
            raise HTTPError(400, str(e)) from None
        return self._send(request, 200, body)

    def _show(self, request: Request, identity: str) -> bytes:
        session = self._gateway.sessions.get(identity)
        record = self._recorder.records.get(identity)
        if record is None:
            raise HTTPError(404, f"charge point {identity!r} is not known to this gateway")
        return self._send(request, 200, views.details(session, record))

    def _messages(self, request: Request, identity: str, lines: bool) -> bytes | int:
        query = _query(request)
        chosen = messages.filters(query)
        flight = self._recorder.flight
        if query.get("follow") == "true" and flight is not None and not lines:
            return messages.follow(request, flight, identity, chosen)
        history = flight.history(identity) if flight is not None else None
        if history is None:
            why = "off" if flight is None else f"no history of charge point {identity!r}"
            raise HTTPError(404, f"flight recorder: {why}")
        return messages.render(request, select(history.frames, chosen), lines)

    def _kick(self, request: Request, identity: str) -> bytes:
        query = _query(request)
        try:
            code = int(query.get("code", "1000"))
        except ValueError:
            raise HTTPError(400, f"code: not a number: {query['code']!r}") from None
        if code not in _CLOSE_CODES and not 3000 <= code <= 4999:
            raise HTTPError(400, "code: a close code of 1000, 1001, 1008, 1011 or 3000-4999")
        reason = query.get("reason", "closed by the operator")
        session = self._gateway.sessions.get(identity)
        if session is None or not session.connected:
            outcome = not_connected(identity)
            return self._send(request, outcome.status, outcome.body)
        _log.info(
            "{cid}: closed by the admin API ({code}) for {client}",
            cid=identity,
            code=code,
            client=caller(request),
        )
        session.connection.close(code, reason)
        return self._send(request, 200, {"identity": identity, "closed": True, "code": code})

    def _call_request(self, request: Request) -> tuple[dict[str, Any], str, dict[str, Any], float]:
        body = _json_body(request)
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise HTTPError(400, "action: a non-empty string is required", field="action")
        payload = body.get("payload", {})
        if not isinstance(payload, dict):
            raise HTTPError(400, "payload: must be a JSON object", field="payload")
        timeout = body.get("timeout", self._default_timeout)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT
        ):
            raise HTTPError(
                400, f"timeout: seconds, more than 0 and at most {MAX_TIMEOUT:g}", field="timeout"
            )
        return body, action, payload, float(timeout)

    def _call(self, request: Request, identity: str) -> int:
        _, action, payload, timeout = self._call_request(request)
        _log.info(
            "{cid}: CALL {action} from the admin API for {client}",
            cid=identity,
            action=action,
            client=caller(request),
        )
        return self._later(request, self._calls.call(identity, action, payload, timeout))

    def _call_many(self, request: Request) -> int:
        body, action, payload, timeout = self._call_request(request)
        identities = body.get("identities")
        if (
            not isinstance(identities, list)
            or not identities
            or not all(isinstance(i, str) and i for i in identities)
        ):
            raise HTTPError(400, "identities: a non-empty list of identities", field="identities")
        d = self._calls.call_many(identities, action, payload, timeout)

        def combine(outcomes: dict[str, Outcome]) -> Outcome:
            results = {i: {"status": o.status, **o.body} for i, o in outcomes.items()}
            return Outcome(200, {"action": action, "results": results})

        return self._later(request, d.addCallback(combine))


def resource(gateway: Gateway, calls: Calls, recorder: Recorder, config: AdminConfig) -> Resource:
    """Every admin route of one gateway, as a resource tree."""
    return tree(Answers(gateway, calls, recorder), config)
