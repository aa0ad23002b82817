# -*- test-case-name: tests.integration.test_admin_api -*-
"""
The admin HTTP routes (README, "Admin API"), on ``twisted.web``.

``/healthz`` is open; every ``/api/`` route and (unless ``[admin]
metrics_auth = false``) ``/metrics`` require ``Authorization: Bearer
TOKEN``, checked before anything else: a wrong or missing token gets 401 and
nothing more (RFC 6750 §3).  Every answer but ``/metrics`` is JSON, errors
included: ``{"error": "what is wrong"}``.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ocppgw.admin import views
from ocppgw.admin.calls import Outcome, not_connected
from ocppgw.interfaces import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY

if TYPE_CHECKING:
    from ocppgw.admin.calls import Calls
    from ocppgw.admin.records import Recorder
    from ocppgw.config import Config
    from ocppgw.config.model import AdminConfig
    from ocppgw.router.routing import Router


class Gateway(Protocol):
    """
    The gateway as the API reads it (:class:`ocppgw.admin.service.Gateway`,
    named here by its shape: the service builds this resource, not the reverse).
    """

    config: Config
    router: Router

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def info(self) -> dict[str, Any]: ...


_log = Logger()

#: Largest request body read, in bytes.
MAX_BODY = 1024 * 1024
#: Longest wait a CALL may ask for, in seconds.
MAX_TIMEOUT = 3600.0
#: Close codes an operator may ask for (RFC 6455 §7.4.1; 3000-4999 registered/private).
_CLOSE_CODES = {CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_INTERNAL_ERROR}


class HTTPError(Exception):
    """An answer other than 200; ``body`` is its JSON."""

    def __init__(self, status: int, error: str, **more: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, **more}


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


def send(request: Request, status: int, body: dict[str, Any]) -> bytes:
    """``body`` as the JSON answer with ``status``."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if status == 401:
        request.setHeader(b"www-authenticate", b'Bearer realm="ocppgw"')
    return json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n"


def internal_error(failure: Failure, request: Request, finished: list[object]) -> None:
    """
    The Deferred of ``request`` failed (a bug below the HTTP layer): log the
    traceback, and, unless an answer was written or the client went away
    (``finished`` not empty), answer 500 with the error in one line.
    """
    _log.failure(
        "admin request {method} {path} failed", failure, method=request.method, path=request.path
    )
    if finished:
        return
    finished.append(failure)
    why = failure.getErrorMessage().splitlines() or [""]
    error = f"internal error: {type(failure.value).__name__}: {why[0]}"
    request.write(send(request, 500, {"error": error}))
    request.finish()


def check_token(config: AdminConfig, request: Request, path: str) -> None:
    """
    :raises HTTPError: 401 for a route of ``path`` that needs the token,
        when the request does not carry it (RFC 6750 §3).
    """
    protected = path.startswith("/api/") or (path == "/metrics" and config.metrics_auth)
    if not protected:
        return
    header = request.getHeader(b"authorization") or b""
    given = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, value = given.partition(" ")
    token = config.token
    if (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8"))
    ):
        return
    why = (
        "no token is configured ([admin] token or token_file)"
        if token is None
        else "missing or wrong bearer token"
    )
    raise HTTPError(401, why)


class AdminResource(Resource):
    """Every route; one resource, so that the token is checked in one place."""

    isLeaf = True

    def __init__(
        self, gateway: Gateway, calls: Calls, recorder: Recorder, config: AdminConfig
    ) -> None:
        super().__init__()
        self._gateway = gateway
        self._calls = calls
        self._recorder = recorder
        self._config = config
        self._default_timeout = gateway.config.downstream.awaiting_timeout

    # --- plumbing ---

    def render(self, request: Request) -> bytes | int:
        path = (request.path or b"/").decode("utf-8", "replace")
        method = (request.method or b"GET").decode("ascii", "replace")
        try:
            return self._route(request, method, path)
        except HTTPError as e:
            return self._send(request, e.status, e.body)

    def _send(self, request: Request, status: int, body: dict[str, Any]) -> bytes:
        return send(request, status, body)

    def _later(self, request: Request, d: Deferred[Outcome]) -> int:
        finished: list[object] = []

        def gone(result: object) -> None:
            finished.append(result)

        request.notifyFinish().addBoth(gone)

        def answer(outcome: Outcome) -> None:
            if not finished:  # the client may have gone
                finished.append(outcome)
                request.write(self._send(request, outcome.status, outcome.body))
                request.finish()

        d.addCallback(answer).addErrback(internal_error, request, finished)
        return NOT_DONE_YET

    def _route(self, request: Request, method: str, path: str) -> bytes | int:
        if path == "/healthz":
            self._method(method, "GET")
            healthy, body = self._gateway.health()
            return self._send(request, 200 if healthy else 503, body)
        check_token(self._config, request, path)
        if path == "/metrics":
            self._method(method, "GET")
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
            return generate_latest(self._recorder.metrics.registry)
        parts = [unquote(p) for p in path.split("/")[1:]]
        if parts[:2] != ["api", "v1"] or len(parts) < 3:
            raise HTTPError(404, f"no such route: {path}")
        route = parts[2:]
        if route == ["gateway"]:
            self._method(method, "GET")
            return self._send(request, 200, self._gateway.info())
        if route == ["chargepoints"]:
            self._method(method, "GET")
            return self._list(request)
        if route == ["calls"]:
            self._method(method, "POST")
            return self._call_many(request)
        if len(route) == 2 and route[0] == "chargepoints" and route[1]:
            self._method(method, "GET", "DELETE")
            if method == "DELETE":
                return self._kick(request, route[1])
            return self._show(request, route[1])
        if len(route) == 3 and route[0] == "chargepoints" and route[2] == "calls":
            self._method(method, "POST")
            return self._call(request, route[1])
        raise HTTPError(404, f"no such route: {path}")

    def _method(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HTTPError(405, f"method {method} not allowed here; use {' or '.join(allowed)}")

    # --- routes ---

    def _list(self, request: Request) -> bytes:
        try:
            body = views.page(
                self._gateway.router.sessions(), self._recorder.records, _query(request)
            )
        except views.QueryError as e:
            raise HTTPError(400, str(e)) from None
        return self._send(request, 200, body)

    def _show(self, request: Request, identity: str) -> bytes:
        session = self._gateway.router.session(identity)
        record = self._recorder.records.get(identity)
        if record is None:
            raise HTTPError(404, f"charge point {identity!r} is not known to this gateway")
        return self._send(request, 200, views.details(session, record))

    def _kick(self, request: Request, identity: str) -> bytes:
        query = _query(request)
        try:
            code = int(query.get("code", "1000"))
        except ValueError:
            raise HTTPError(400, f"code: not a number: {query['code']!r}") from None
        if code not in _CLOSE_CODES and not 3000 <= code <= 4999:
            raise HTTPError(400, "code: a close code of 1000, 1001, 1008, 1011 or 3000-4999")
        reason = query.get("reason", "closed by the operator")
        session = self._gateway.router.session(identity)
        if session is None or not session.connected:
            outcome = not_connected(identity)
            return self._send(request, outcome.status, outcome.body)
        _log.info(
            "{cid}: closed by the admin API ({code}) for {client}",
            cid=identity,
            code=code,
            client=request.getClientAddress(),
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
            client=request.getClientAddress(),
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
