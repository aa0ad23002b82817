"""The admin routes as HTTP sees them: odd paths, the token, methods, %-decoded identities."""

from __future__ import annotations

import json
import os
import socket
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource
from twisted.web.server import Site

from ocppgw.admin.api import resource
from ocppgw.admin.calls import Outcome
from ocppgw.admin.records import Record
from ocppgw.admin.routes import caller
from ocppgw.config.model import AdminConfig
from ocppgw.session.rules import Phase
from tests.clocks import ClockTestCase

TOKEN = "s3cret"
IDENTITIES = ["CP1", "a/b", "€", "\ufffd", ""]


class FakeSession:
    """A connected session that records being closed."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.version = "ocpp1.6"
        self.phase = Phase.OPEN
        self.connected = True
        self.registration = None
        self.closed: list[tuple[int, str]] = []
        self.connection = SimpleNamespace(
            close=lambda code, reason: self.closed.append((code, reason))
        )

    def queued(self) -> int:
        return 0


class FakeCalls:
    """CALLs answered at once, naming what was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def call(self, identity: str, action: str, payload: Any, timeout: float) -> Deferred[Outcome]:
        self.asked.append(identity)
        return succeed(Outcome(200, {"identity": identity, "action": action}))

    def call_many(self, identities: Any, action: str, payload: Any, timeout: float) -> Any:
        return succeed({i: Outcome(200, {"identity": i}) for i in identities})


def api(config: AdminConfig, calls: FakeCalls | None = None) -> IResource:
    """One gateway's admin routes, holding :data:`IDENTITIES`."""
    sessions = {i: FakeSession(i) for i in IDENTITIES}
    gateway: Any = SimpleNamespace(
        config=SimpleNamespace(downstream=SimpleNamespace(awaiting_timeout=30.0)),
        sessions=SimpleNamespace(all=lambda: list(sessions.values()), get=sessions.get),
        health=lambda: (True, {"status": "ok"}),
        info=lambda: {"gateway_id": "gw"},
    )
    registry = CollectorRegistry()
    Gauge("ocppgw_test", "A gauge.", registry=registry).set(1)
    recorder: Any = SimpleNamespace(
        records={i: Record(i, "ocpp1.6", "ws", 0, "peer", 0.0) for i in IDENTITIES},
        metrics=SimpleNamespace(registry=registry),
    )
    return resource(gateway, calls or FakeCalls(), recorder, config)


def exchange(
    resource: IResource,
    method: str,
    target: str,
    token: str | None = TOKEN,
    body: bytes = b"",
    host: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers in lower case, body) of one HTTP/1.0 request to a Site of ``resource``."""
    site = Site(resource)
    protocol = site.buildProtocol(None)
    transport = StringTransport() if host is None else StringTransport(hostAddress=host)
    assert protocol is not None
    protocol.makeConnection(transport)
    head = [f"{method} {target} HTTP/1.0", f"Content-Length: {len(body)}"]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    protocol.dataReceived(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    raw_head, _, data = transport.value().partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    return int(status_line.split(" ")[1]), headers, data


AUTH = AdminConfig("tcp:0", TOKEN, True, None)


class RouteTests(SynchronousTestCase):
    def answer(
        self, method: str, target: str, token: str | None = TOKEN, config: AdminConfig = AUTH
    ) -> tuple[int, Any]:
        status, headers, data = exchange(api(config), method, target, token)
        self.assertEqual(headers["content-type"], "application/json")
        return status, json.loads(data)

    def test_unknown_paths_answer_json_404_naming_the_path(self) -> None:
        """Every path of no route, with the token, is a JSON 404 naming the path as sent."""
        for path in [
            "/",
            "//",
            "/nothing",
            "/nothing/a/b",
            "//healthz",
            "/healthz/",
            "/healthz/x",
            "/api",
            "/api/",
            "/api//",
            "/api/v1",
            "/api/v1/",
            "/api/v2/gateway",
            "/api/v1/whatever",
            "/api/v1//gateway",
            "/api/v1/gateway/",
            "/api/v1/chargepoints/",
            "/api/v1/chargepoints//",
            "/api/v1/chargepoints/CP1/",
            "/api/v1/chargepoints/CP1/x",
            "/api/v1/chargepoints/CP1/calls/",
            "/api/v1/chargepoints/CP1/calls/x",
            "/api/v1/calls/",
            "/API/v1/gateway",
            "/apix",
            "/api%2Fv1/gateway",
            "/metrics/",
            "/metrics/x",
        ]:
            self.assertEqual(
                self.answer("GET", path), (404, {"error": f"no such route: {path}"}), path
            )

    def test_query_is_not_part_of_the_404s_path(self) -> None:
        """The 404 names the path without its query."""
        self.assertEqual(
            self.answer("POST", "/api/v1/x?y=1"), (404, {"error": "no such route: /api/v1/x"})
        )

    def test_paths_outside_api_and_metrics_are_open(self) -> None:
        """Without the token, /api, /metrics/ and other paths outside /api/ are 404, not 401."""
        open_paths = ["/api", "/apix", "//healthz", "/healthz/", "/metrics/", "//api/v1"]
        for path in open_paths:
            self.assertEqual(
                self.answer("GET", path, token=None), (404, {"error": f"no such route: {path}"})
            )

    def test_token_before_404_under_api(self) -> None:
        """Without the right token, any path under /api/ is 401 with the bearer challenge."""
        for path in ["/api/", "/api/v1", "/api/v1/", "/api/v1/no", "/api/x/y", "/api/v1/calls"]:
            for token in (None, "wrong"):
                status, headers, data = exchange(api(AUTH), "DELETE", path, token)
                self.assertEqual(status, 401, path)
                self.assertEqual(headers["www-authenticate"], 'Bearer realm="ocppgw"')
                self.assertEqual(json.loads(data), {"error": "missing or wrong bearer token"})

    def test_no_token_configured(self) -> None:
        """With no token configured, /api/ routes answer 401 saying so."""
        config = AdminConfig("tcp:0", None, True, None)
        self.assertEqual(
            self.answer("GET", "/api/v1/gateway", config=config),
            (401, {"error": "no token is configured ([admin] token or token_file)"}),
        )

    def test_local_socket_needs_no_token(self) -> None:
        """Over [admin] endpoint = local's UNIX socket no token is asked; over TCP it still is."""
        local = AdminConfig("unix:/run/ocppgw/gw.sock", None, True, "/run/ocppgw/gw.sock")
        over_unix = UNIXAddress(b"/run/ocppgw/gw.sock")
        for path in ("/api/v1/gateway", "/metrics"):
            status, _, data = exchange(api(local), "GET", path, None, host=over_unix)
            self.assertEqual(status, 200, data)
        status, _, _ = exchange(api(local), "GET", "/api/v1/gateway", None)
        self.assertEqual(status, 401)
        other = AdminConfig("unix:/tmp/admin.sock", None, True, None)
        status, _, _ = exchange(api(other), "GET", "/api/v1/gateway", None, host=over_unix)
        self.assertEqual(status, 401)

    def test_metrics_needs_the_token_unless_metrics_auth_is_off(self) -> None:
        """/metrics is 401 without the token; with metrics_auth = false it is served without."""
        self.assertEqual(
            self.answer("GET", "/metrics", token=None),
            (401, {"error": "missing or wrong bearer token"}),
        )
        open_metrics = AdminConfig("tcp:0", TOKEN, False, None)
        for token in (None, TOKEN):
            status, headers, data = exchange(api(open_metrics), "GET", "/metrics", token)
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("text/plain"))
            self.assertIn(b"ocppgw_test 1.0", data)

    def test_healthz_is_open(self) -> None:
        """/healthz answers without the token, and with a query."""
        self.assertEqual(self.answer("GET", "/healthz?x=1", token=None), (200, {"status": "ok"}))

    def test_wrong_method_is_405(self) -> None:
        """Other methods are 405 naming those the route has (HEAD too; /healthz with no token)."""
        self.assertEqual(
            self.answer("DELETE", "/api/v1/gateway"),
            (405, {"error": "method DELETE not allowed here; use GET"}),
        )
        self.assertEqual(
            self.answer("POST", "/healthz", token=None),
            (405, {"error": "method POST not allowed here; use GET"}),
        )
        self.assertEqual(
            self.answer("PUT", "/api/v1/chargepoints/CP1"),
            (405, {"error": "method PUT not allowed here; use GET or DELETE"}),
        )
        self.assertEqual(
            self.answer("GET", "/api/v1/calls"),
            (405, {"error": "method GET not allowed here; use POST"}),
        )
        self.assertEqual(exchange(api(AUTH), "HEAD", "/api/v1/gateway")[0], 405)

    def test_identity_is_percent_decoded(self) -> None:
        """An identity is its %-decoded segment: %2F a slash, UTF-8 decoded, a bad byte U+FFFD."""
        cases = [("a%2Fb", "a/b"), ("%E2%82%AC", "€"), ("%FF", "\ufffd"), ("CP%31", "CP1")]
        for segment, identity in cases:
            status, body = self.answer("GET", f"/api/v1/chargepoints/{segment}")
            self.assertEqual((status, body["identity"]), (200, identity))

    def test_unknown_identity_is_404(self) -> None:
        """A charge point the gateway never saw is 404 naming it."""
        self.assertEqual(
            self.answer("GET", "/api/v1/chargepoints/CP%202"),
            (404, {"error": "charge point 'CP 2' is not known to this gateway"}),
        )

    def test_kick_decoded_identity(self) -> None:
        """DELETE closes the session of the decoded identity."""
        status, body = self.answer("DELETE", "/api/v1/chargepoints/a%2Fb?code=1001")
        self.assertEqual((status, body), (200, {"identity": "a/b", "closed": True, "code": 1001}))

    def test_call_to_decoded_identity(self) -> None:
        """A CALL goes to the decoded identity; an empty segment is the identity ''."""
        for segment, identity in [("a%2Fb", "a/b"), ("", "")]:
            calls = FakeCalls()
            status, _, data = exchange(
                api(AUTH, calls), "POST", f"/api/v1/chargepoints/{segment}/calls",
                body=b'{"action": "Reset"}',
            )
            self.assertEqual((status, calls.asked), (200, [identity]))
            self.assertEqual(json.loads(data), {"identity": identity, "action": "Reset"})

    def test_encoded_route_name_needs_the_token(self) -> None:
        """A route's name %-encoded is that route (RFC 3986 §6.2.2.2), and needs the token too."""
        self.assertEqual(
            self.answer("GET", "/%61pi/v1/gateway", token=None),
            (401, {"error": "missing or wrong bearer token"}),
        )
        self.assertEqual(self.answer("GET", "/%61pi/v1/%67ateway"), (200, {"gateway_id": "gw"}))


class FanoutRouteTests(ClockTestCase):
    """The supervisor's tree, over two workers that answer as :func:`api` does."""

    def setUp(self) -> None:
        super().setUp()
        from ocppgw.admin.fanout import Fanout, Reply
        from ocppgw.admin.routes import tree
        from ocppgw.config import parse

        config = parse(
            "[gateway]\nworkers = 2\n[listener:ws]\nendpoint = tcp:8080\n"
            f"[admin]\ntoken = {TOKEN}\n"
        )
        workers: list[Any] = [
            SimpleNamespace(index=i, pid=i + 1, gateway_id=f"w{i}", client_id=f"c{i}")
            for i in range(2)
        ]
        # Both know every identity, but worker 0 says it knows not "a/b".
        self.calls = [FakeCalls(), FakeCalls()]
        sites = [api(AUTH, self.calls[0]), api(AUTH, self.calls[1])]
        self.asked: list[tuple[int, str, str]] = []

        def ask(worker: Any, method: str, uri: str, body: bytes | None = None, *_: Any) -> Any:
            self.asked.append((worker.index, method, uri))
            if worker.index == 0 and uri.startswith("/api/v1/chargepoints/a%2Fb"):
                return succeed(Reply(worker, 404, b'{"error": "not known"}'))
            status, _, data = exchange(sites[worker.index], method, uri, TOKEN, body or b"")
            return succeed(Reply(worker, status, data))

        fanout = Fanout(config, workers, self.clocks.add(MemoryReactorClock()))
        self.patch(fanout, "ask", ask)
        self.root = tree(fanout, config.admin)

    def test_no_route_goes_to_worker_0(self) -> None:
        """A path of no route is answered by worker 0, as one gateway answers it."""
        status, _, data = exchange(self.root, "GET", "/api/v1/whatever?x=1")
        error = {"error": "no such route: /api/v1/whatever"}
        self.assertEqual((status, json.loads(data)), (404, error))
        self.assertEqual(self.asked, [(0, "GET", "/api/v1/whatever?x=1")])

    def test_token_checked_before_asking(self) -> None:
        """Without the token, a path under /api/ is 401 and no worker is asked."""
        status, headers, _ = exchange(self.root, "GET", "/api/v1/whatever", token=None)
        self.assertEqual((status, headers["www-authenticate"]), (401, 'Bearer realm="ocppgw"'))
        self.assertEqual(self.asked, [])

    def test_call_to_encoded_identity_goes_to_its_holder(self) -> None:
        """The holder of a %-encoded identity is asked for it encoded once, and gets the CALL."""
        status, _, _ = exchange(
            self.root, "POST", "/api/v1/chargepoints/a%2Fb/calls", body=b'{"action": "Reset"}'
        )
        self.assertEqual(status, 200)
        self.assertEqual(
            self.asked,
            [
                (0, "GET", "/api/v1/chargepoints/a%2Fb"),
                (1, "GET", "/api/v1/chargepoints/a%2Fb"),
                (1, "POST", "/api/v1/chargepoints/a%2Fb/calls"),
            ],
        )
        self.assertEqual(self.calls[1].asked, ["a/b"])


class _Over:
    """A request as caller() reads it: the peer's address, and its transport's socket."""

    def __init__(self, peer: Any, handle: Any = None) -> None:
        self._peer = peer
        if handle is not None:
            self.transport = SimpleNamespace(getHandle=lambda: handle)

    def getClientAddress(self) -> Any:
        return self._peer


class CallerTests(SynchronousTestCase):
    def test_over_a_unix_socket_the_caller_is_its_pid_and_uid(self) -> None:
        """Over a UNIX socket the audit names the peer process's pid and uid (SO_PEERCRED)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        self.assertEqual(
            caller(_Over(UNIXAddress(None), ours)),  # type: ignore[arg-type]
            f"local socket (pid {os.getpid()}, uid {os.getuid()})",
        )

    def test_a_unix_socket_without_credentials_is_named_local_socket(self) -> None:
        """Without a socket to ask (no transport handle), the caller is "local socket"."""
        self.assertEqual(caller(_Over(UNIXAddress(None))), "local socket")  # type: ignore[arg-type]

    def test_over_tcp_the_caller_is_its_address_and_port(self) -> None:
        """Over TCP the audit names the peer's address and port."""
        peer = IPv4Address("TCP", "192.0.2.7", 40123)
        self.assertEqual(caller(_Over(peer)), "192.0.2.7:40123")  # type: ignore[arg-type]
