"""
The HTTP authentication callout (issue 25): the request, the answer, the
cache per identity and credentials, one request in flight per identity,
timeouts and errors, SIGHUP; and the handshake it decides.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from ocppgw.config import HTTPAuthConfig, ListenerConfig
from ocppgw.listener.admission import Gatekeeper
from ocppgw.listener.factory import OCPPServerFactory
from ocppgw.listener.httpauth import (
    HTTPAuth,
    Question,
    ServiceError,
    parse_answer,
    read_headers,
)
from ocppgw.listener.ratelimit import LoginLimiter
from tests.clocks import ClockTestCase

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


class Response:
    """An IResponse of ``code`` whose body is ``body``."""

    def __init__(self, code: int, body: bytes) -> None:
        self.code = code
        self.phrase = b"X"
        self.headers = Headers()
        self.length = len(body)
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class Agent:
    """An IAgent that records each request; the test answers it."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, Headers, bytes, Deferred[Any]]] = []
        self.cancelled = 0

    def request(self, method: bytes, uri: bytes, headers: Headers, producer: Any) -> Deferred[Any]:
        body: list[bytes] = []
        producer.startProducing(type("C", (), {"write": lambda self, data: body.append(data)})())

        def cancel(d: Deferred[Any]) -> None:
            self.cancelled += 1

        d: Deferred[Any] = Deferred(cancel)
        self.requests.append((method, uri, headers, b"".join(body), d))
        return d

    def answer(self, n: int, code: int, value: object) -> None:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.requests[n][4].callback(Response(code, body))


class Events:
    def __init__(self) -> None:
        self.counted: list[str] = []

    def auth_http(self, result: str) -> None:
        self.counted.append(result)


def config(**kw: Any) -> HTTPAuthConfig:
    values: dict[str, Any] = {
        "url": "http://auth.example/check",
        "timeout": 2.0,
        "cache": 300.0,
        "on_error": "deny",
        "headers": None,
    }
    values.update(kw)
    return HTTPAuthConfig(**values)


def question(identity: str = "CP1", password: bytes = b"secret") -> Question:
    return Question(identity, "ws", "192.0.2.1", ("ocpp1.6",), username=identity, password=password)


ALLOW = {"result": "allow"}


class CalloutTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.agent = Agent()
        self.events = Events()
        self.auth = HTTPAuth(config(), self.clock, self.agent, self.events)  # type: ignore[arg-type]

    def results(self, d: Deferred[Any]) -> list[Any]:
        out: list[Any] = []
        d.addBoth(out.append)
        return out

    def test_request_is_a_json_post_with_every_field(self) -> None:
        """One POST of JSON: identity, credentials, certificate, address, listener, offers."""
        q = Question(
            "CP1", "ws", "192.0.2.1", ("ocpp2.0.1", "ocpp1.6"),
            cert_subject="CN=CP1", cert_serial="1f", cert_fingerprint="ab" * 32,
        )
        got = self.results(self.auth.ask(q))
        ((method, uri, headers, body, _),) = self.agent.requests
        self.assertEqual((method, uri), (b"POST", b"http://auth.example/check"))
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(json.loads(body), {
            "identity": "CP1", "username": None, "password": None,
            "certificate": {"subject": "CN=CP1", "serial": "1f", "fingerprint": "ab" * 32},
            "remote_address": "192.0.2.1", "listener": "ws",
            "subprotocols": ["ocpp2.0.1", "ocpp1.6"],
        })
        self.agent.answer(0, 200, {"result": "allow", "versions": ["ocpp1.6"], "reason": "ok"})
        self.assertEqual((got[0].allow, got[0].versions), (True, ("ocpp1.6",)))
        self.assertEqual(self.events.counted, ["allow"])

    def test_cache_per_identity_and_credentials(self) -> None:
        """A cached answer serves the same credentials only, until http_cache runs out or SIGHUP."""
        self.results(self.auth.ask(question()))
        self.agent.answer(0, 200, ALLOW)
        cached = self.results(self.auth.ask(question()))
        self.assertTrue(cached[0].allow)
        self.assertEqual(len(self.agent.requests), 1)
        other = self.results(self.auth.ask(question(password=b"other")))
        self.assertEqual(len(self.agent.requests), 2)
        self.agent.answer(1, 200, {"result": "deny"})
        self.assertFalse(other[0].allow)
        self.clock.advance(301)
        self.results(self.auth.ask(question()))
        self.assertEqual(len(self.agent.requests), 3)
        self.agent.answer(2, 200, ALLOW)
        self.auth.reload()
        self.results(self.auth.ask(question()))
        self.assertEqual(len(self.agent.requests), 4)
        self.agent.answer(3, 200, ALLOW)
        self.assertEqual(self.events.counted, ["allow", "cache_hit", "deny", "allow", "allow"])

    def test_cache_is_per_listener(self) -> None:
        """An answer given for one listener is not reused on another: it may differ there."""
        self.results(self.auth.ask(question()))
        self.agent.answer(0, 200, ALLOW)
        other = Question("CP1", "wss", "192.0.2.1", ("ocpp1.6",), "CP1", b"secret")
        got = self.results(self.auth.ask(other))
        self.assertEqual(len(self.agent.requests), 2)
        self.agent.answer(1, 200, {"result": "deny"})
        self.assertFalse(got[0].allow)

    def test_one_request_in_flight_per_identity(self) -> None:
        """Concurrent asks of one identity share its request; other credentials wait for it."""
        first = self.results(self.auth.ask(question()))
        second = self.results(self.auth.ask(question()))
        third = self.results(self.auth.ask(question(password=b"other")))
        self.assertEqual(len(self.agent.requests), 1)
        self.agent.answer(0, 200, ALLOW)
        self.assertTrue(first[0].allow and second[0].allow)
        self.assertEqual((third, len(self.agent.requests)), ([], 2))
        self.agent.answer(1, 200, {"result": "deny"})
        self.assertFalse(third[0].allow)

    def test_timeout_is_an_error_and_cancels(self) -> None:
        """No answer within http_timeout: the request is cancelled, every waiter gets an error."""
        got = self.results(self.auth.ask(question()))
        self.clock.advance(2)
        self.assertEqual(self.agent.cancelled, 1)
        self.assertIsInstance(got[0], Failure)
        self.assertIsInstance(got[0].value, ServiceError)
        self.assertEqual(self.events.counted, ["error"])
        # Errors are not cached: the next handshake asks again.
        self.results(self.auth.ask(question()))
        self.assertEqual(len(self.agent.requests), 2)
        self.agent.answer(1, 200, ALLOW)

    def test_bad_answers_are_errors(self) -> None:
        """A 5xx, a 4xx, a non-JSON body or a missing result are errors, not decisions."""
        for n, (code, body) in enumerate(
            [(500, ALLOW), (403, ALLOW), (200, b"<html>"), (200, {"result": "yes"})]
        ):
            got = self.results(self.auth.ask(question(f"CP{n}")))
            self.agent.answer(n, code, body)
            self.assertIsInstance(got[0].value, ServiceError, (code, body))
        self.assertEqual(self.events.counted, ["error"] * 4)

    def test_headers_file(self) -> None:
        """http_headers lines are sent with every request; SIGHUP re-reads them."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = Path(directory) / "headers"
        path.write_text("# the service's token\nAuthorization: Bearer t1\n\nX-Site: a\n")
        auth = HTTPAuth(config(headers=str(path)), self.clock, self.agent)  # type: ignore[arg-type]
        self.results(auth.ask(question()))
        headers = self.agent.requests[0][2]
        self.assertEqual(headers.getRawHeaders("authorization"), ["Bearer t1"])
        self.assertEqual(headers.getRawHeaders("x-site"), ["a"])
        self.agent.answer(0, 200, ALLOW)
        path.write_text("Authorization: Bearer t2\n")
        auth.reload()
        self.results(auth.ask(question()))
        self.assertEqual(self.agent.requests[1][2].getRawHeaders("authorization"), ["Bearer t2"])
        self.agent.answer(1, 200, ALLOW)


def test_read_headers_names_the_bad_line(tmp_path: Path) -> None:
    """A line that is not "Name: value" is refused with the file and line number."""
    path = tmp_path / "h"
    path.write_text("X-Ok: 1\nnot a header\n")
    try:
        read_headers(str(path))
    except ValueError as e:
        assert str(e) == f"{path}:2: not a 'Name: value' header line"
    else:
        raise AssertionError("no error")


def test_parse_answer() -> None:
    """result, versions and reason are read; versions not a list of strings is an error."""
    answer = parse_answer(b'{"result": "deny", "reason": "unknown"}')
    assert (answer.allow, answer.versions, answer.reason) == (False, None, "unknown")
    try:
        parse_answer(b'{"result": "allow", "versions": "ocpp1.6"}')
    except ServiceError as e:
        assert "versions" in str(e)
    else:
        raise AssertionError("no error")


# --- the handshake it decides ---


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:
        self.producer = None


class HandshakeTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.agent = Agent()
        self.opened: list[str] = []

    def factory(self, profile: int, on_error: str = "deny") -> OCPPServerFactory:
        listener = ListenerConfig("t", "tcp:0", "/ocpp", profile, None, 65536, 10.0)
        auth = HTTPAuth(config(on_error=on_error), self.clock, self.agent)  # type: ignore[arg-type]
        limiter = LoginLimiter(self.clock, 2, 100, 60.0, 1000)
        return OCPPServerFactory(
            listener, VERSIONS, None, self.open, lambda s: None,
            gatekeeper=Gatekeeper(listener, None, limiter, None, auth),
        )

    def open(self, identity: str, version: str, connection: Any) -> object:
        self.opened.append(version)
        return object()

    def handshake(
        self, factory: OCPPServerFactory, password: bytes | None = b"pw", offer: str = "ocpp1.6"
    ) -> _Transport:
        proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.10", 5555))
        transport = _Transport(peerAddress=IPv4Address("TCP", "192.0.2.10", 5555))
        proto.makeConnection(transport)
        lines = [
            "GET /ocpp/CP1 HTTP/1.1", "Host: localhost", "Upgrade: websocket",
            "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Protocol: {offer}",
        ]
        if password is not None:
            lines.append("Authorization: Basic " + base64.b64encode(b"CP1:" + password).decode())
        proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.addCleanup(lambda: proto.connectionLost(Failure(CancelledError())))
        self.proto = proto
        return transport

    def test_the_101_waits_for_the_allow(self) -> None:
        """Nothing is answered while the service is asked; its allow upgrades the connection."""
        transport = self.handshake(self.factory(1))
        self.assertEqual(transport.value(), b"")
        self.agent.answer(0, 200, ALLOW)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101"))
        self.assertEqual(self.opened, ["ocpp1.6"])

    def test_client_gone_before_the_answer_gets_no_session(self) -> None:
        """A client that leaves while the service is asked gets no session from its allow."""
        transport = self.handshake(self.factory(1))
        self.proto.connectionLost(Failure(CancelledError()))
        self.agent.answer(0, 200, ALLOW)
        self.assertFalse(transport.value().startswith(b"HTTP/1.1 101"))
        self.assertEqual(self.opened, [])

    def test_deny_is_a_wrong_password_and_counts(self) -> None:
        """A deny is the 401 of a wrong password, without the service's reason; it counts
        towards the failed-login limit (429 once it is reached)."""
        factory = self.factory(1)
        for n in range(2):
            transport = self.handshake(factory, password=f"pw{n}".encode())
            self.agent.answer(n, 200, {"result": "deny", "reason": "secret detail"})
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 401"))
            self.assertNotIn(b"secret detail", transport.value())
        self.assertTrue(self.handshake(factory).value().startswith(b"HTTP/1.1 429"))
        self.assertEqual((len(self.agent.requests), self.opened), (2, []))

    def test_no_basic_header_is_refused_without_asking(self) -> None:
        """Profile 1 without HTTP Basic gets 401 at once; the service is not asked."""
        transport = self.handshake(self.factory(1), password=None)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401"))
        self.assertEqual(self.agent.requests, [])

    def test_versions_outside_the_offer_close_at_once(self) -> None:
        """An allow whose versions the offer lacks completes without a subprotocol, no session."""
        transport = self.handshake(self.factory(1), offer="ocpp1.6")
        self.agent.answer(0, 200, {"result": "allow", "versions": ["ocpp2.0.1"]})
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101"))
        self.assertNotIn(b"Sec-WebSocket-Protocol", transport.value())
        self.assertEqual(self.opened, [])

    def test_error_denies_or_falls_back(self) -> None:
        """A timeout is a 401 with http_on_error = deny; with file and no file entry, a 401 too."""
        for on_error in ("deny", "file"):
            transport = self.handshake(self.factory(1, on_error))
            self.clock.advance(2)
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 401"), on_error)
        self.assertEqual(self.opened, [])

    def test_profile_0_never_asks(self) -> None:
        """A profile 0 listener admits without asking the service."""
        transport = self.handshake(self.factory(0), password=None)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101"))
        self.assertEqual(self.agent.requests, [])
