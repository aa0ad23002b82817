# -*- test-case-name: tests.unit.admin.test_routes -*-
"""
The admin routes as one ``twisted.web`` resource tree, which one gateway
(:mod:`ocppgw.admin.api`) and the supervisor of its workers
(:mod:`ocppgw.admin.fanout`) both serve, each with its own :class:`Routes`::

    /healthz                                open
    /metrics                                the token, unless [admin] metrics_auth = false
    /api/v1/gateway                         the token, as every path under /api/
    /api/v1/chargepoints
    /api/v1/chargepoints/{identity}
    /api/v1/chargepoints/{identity}/calls
    /api/v1/chargepoints/{identity}/messages     (and messages.jsonl)
    /api/v1/calls

* Twisted hands each path segment %-decoded (RFC 3986 §2.1), so a route's
  name may be %-encoded too (§6.2.2.2), and ``{identity}`` may hold any
  character, ``/`` as ``%2F``: it is the decoded segment read as UTF-8, a
  byte that is none replaced by U+FFFD.
* The token is checked in one place, :class:`Protected`, before any route is
  looked for: a wrong or missing one gets 401 and nothing more (RFC 6750 §3).
  ``/api`` itself, and paths below ``/metrics``, are no route and need none.
* A path of no route is the side's ``nowhere``, never Twisted's HTML page.
"""

from __future__ import annotations

import hmac
import json
import socket
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

if TYPE_CHECKING:
    from ocppgw.config.model import AdminConfig

_log = Logger()

#: Renders one method of a route: the answer's bytes, or ``NOT_DONE_YET``.
Handler = Callable[[Request], "bytes | int"]


class HTTPError(Exception):
    """An answer other than 200; ``body`` is its JSON."""

    def __init__(self, status: int, error: str, **more: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, **more}


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


def later(request: Request, d: Deferred[tuple[int, Any]]) -> int:
    """
    Answer ``request`` with ``d``'s ``(status, body)`` when it fires: a dict
    as JSON, bytes as the metrics' text; nothing if the client went away.
    """
    finished: list[object] = []
    request.notifyFinish().addBoth(finished.append)

    def answer(result: tuple[int, Any]) -> None:
        if finished:
            return  # the client went away
        finished.append(result)
        status, out = result
        if isinstance(out, bytes):
            request.setResponseCode(status)
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
            request.write(out)
        else:
            request.write(send(request, status, out))
        request.finish()

    d.addCallback(answer).addErrback(internal_error, request, finished)
    return NOT_DONE_YET


def caller(request: Request) -> str:
    """
    Who sent ``request``, for the audit lines of the admin actions: the TCP
    peer's address and port, or over a UNIX socket the peer process's pid and
    uid (``SO_PEERCRED``, where the platform has it), else "local socket".
    """
    peer = request.getClientAddress()
    if isinstance(peer, IPv4Address | IPv6Address):
        return f"{peer.host}:{peer.port}"
    if not isinstance(peer, UNIXAddress):
        return str(peer)
    handle = getattr(getattr(request, "transport", None), "getHandle", None)
    credentials = getattr(socket, "SO_PEERCRED", None)
    if handle is None or credentials is None:
        return "local socket"
    try:
        raw = handle().getsockopt(socket.SOL_SOCKET, credentials, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return "local socket"
    pid, uid, _ = struct.unpack("3i", raw)
    return f"local socket (pid {pid}, uid {uid})"


def audit_passed_on(request: Request, method: str, uri: str) -> None:
    """
    With workers, the supervisor's audit line of an admin action it passes
    on: the worker's own line can only name the supervisor as its caller.
    """
    if method not in ("GET", "HEAD"):
        _log.info(
            "admin API {method} {uri} for {client}, passed to the workers",
            method=method,
            uri=uri,
            client=caller(request),
        )


def refusal(config: AdminConfig, request: Request) -> str | None:
    """
    Why ``request`` does not carry the token (RFC 6750 §3); None when it
    does, or when it came over ``[admin] endpoint = local``'s socket, whose
    mode (0600, in a directory of mode 0700) lets only the gateway's user in.
    """
    if config.local is not None and isinstance(request.getHost(), UNIXAddress):
        return None
    header = request.getHeader(b"authorization") or b""
    given = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, value = given.partition(" ")
    token = config.token
    if token is None:
        return "no token is configured ([admin] token or token_file)"
    if scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8"), token.encode("utf-8")
    ):
        return None
    return "missing or wrong bearer token"


class Route(Resource):
    """One route: each method of ``methods`` renders with its handler, any other with ``other``."""

    isLeaf = True

    def __init__(self, methods: Mapping[str, Handler], other: Handler) -> None:
        super().__init__()
        self._methods = methods
        self._other = other

    def render(self, request: Request) -> bytes | int:
        method = (request.method or b"GET").decode("ascii", "replace")
        try:
            return self._methods.get(method, self._other)(request)
        except HTTPError as e:
            return send(request, e.status, e.body)


class NoRoute(Resource):
    """The JSON 404 of a path no route has, naming the path as the request gave it."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        path = (request.path or b"/").decode("utf-8", "replace")
        return send(request, 404, {"error": f"no such route: {path}"})


class Refused(Resource):
    """The 401 of a request without the token, to any method and any path below."""

    isLeaf = True

    def __init__(self, why: str) -> None:
        super().__init__()
        self._why = why

    def render(self, request: Request) -> bytes:
        return send(request, 401, {"error": self._why})


class Protected(Resource):
    """``resource``, and every path below it, for a request with the token only."""

    def __init__(self, resource: IResource, config: AdminConfig) -> None:
        super().__init__()
        self._resource = resource
        self._config = config
        #: Twisted goes below a leaf no further: neither does it below this.
        self.isLeaf = resource.isLeaf

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        why = refusal(self._config, request)
        if why is not None:
            return Refused(why)
        child: IResource = self._resource.getChildWithDefault(path, request)
        return child

    def render(self, request: Request) -> bytes | int:
        why = refusal(self._config, request)
        return (self._resource if why is None else Refused(why)).render(request)


class Routes(Protocol):
    """What one side answers at each route: a resource rendering it, whatever the method."""

    @property
    def nowhere(self) -> IResource:
        """A path of no route, and any path below it (a leaf)."""
        ...

    def healthz(self) -> IResource: ...

    def metrics(self) -> IResource: ...

    def gateway(self) -> IResource: ...

    def chargepoints(self) -> IResource: ...

    def chargepoint(self, identity: str) -> IResource: ...

    def call(self, identity: str) -> IResource:
        """``/api/v1/chargepoints/{identity}/calls``."""
        ...

    def calls(self) -> IResource:
        """``/api/v1/calls``."""
        ...

    def messages(self, identity: str, lines: bool) -> IResource:
        """``/api/v1/chargepoints/{identity}/messages`` (``lines``: ``messages.jsonl``)."""
        ...


class Node(Resource):
    """A path of the tree: ``answer`` renders it; a child not put is ``nowhere``."""

    def __init__(self, answer: IResource, nowhere: IResource) -> None:
        super().__init__()
        self._answer = answer
        self._nowhere = nowhere

    def getChild(self, path: bytes, request: Request) -> IResource:
        return self._nowhere

    def render(self, request: Request) -> bytes | int:
        return self._answer.render(request)  # type: ignore[no-any-return]


class ChargePoints(Node):
    """``/api/v1/chargepoints``, and below it each charge point and its CALLs."""

    def __init__(self, routes: Routes) -> None:
        super().__init__(routes.chargepoints(), routes.nowhere)
        self._routes = routes

    def getChild(self, path: bytes, request: Request) -> IResource:
        identity = path.decode("utf-8", "replace")
        nowhere = self._routes.nowhere
        # An empty segment is no charge point, yet ``//calls`` is a CALL to "".
        node = Node(self._routes.chargepoint(identity) if identity else nowhere, nowhere)
        node.putChild(b"calls", Node(self._routes.call(identity), nowhere))
        node.putChild(b"messages", Node(self._routes.messages(identity, False), nowhere))
        node.putChild(b"messages.jsonl", Node(self._routes.messages(identity, True), nowhere))
        return node


def tree(routes: Routes, config: AdminConfig) -> Resource:
    """The root of the admin routes, answered by ``routes``."""
    nowhere = routes.nowhere
    metrics = routes.metrics()
    v1 = Node(nowhere, nowhere)
    v1.putChild(b"gateway", Node(routes.gateway(), nowhere))
    v1.putChild(b"chargepoints", ChargePoints(routes))
    v1.putChild(b"calls", Node(routes.calls(), nowhere))
    # Every path under /api/ needs the token, a path of no route too.
    api = Node(nowhere, Protected(nowhere, config))
    api.putChild(b"v1", Protected(v1, config))
    root = Node(nowhere, nowhere)
    root.putChild(b"healthz", Node(routes.healthz(), nowhere))
    root.putChild(
        b"metrics", Node(Protected(metrics, config) if config.metrics_auth else metrics, nowhere)
    )
    root.putChild(b"api", api)
    return root
