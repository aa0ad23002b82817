"""The admin routes' plumbing: an answer for every request, whatever its Deferred does."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from ocppgw.admin.api import resource
from ocppgw.admin.calls import Outcome
from ocppgw.config.model import AdminConfig
from tests.clocks import ClockTestCase

TOKEN = "s3cret"


class FailingCalls:
    """Calls whose Deferred fails (a bug below the HTTP layer)."""

    def __init__(self) -> None:
        self.pending: Deferred[Outcome] = Deferred()

    def call(self, identity: str, action: str, payload: Any, timeout: float) -> Deferred[Outcome]:
        return self.pending

    def call_many(self, identities: Any, action: str, payload: Any, timeout: float) -> Any:
        return fail(KeyError("boom"))


class _Found:
    """The resource of the admin tree a request reaches, as a Site finds it."""

    def __init__(self, root: IResource) -> None:
        self._root = root

    def render(self, request: DummyRequest) -> Any:
        return getChildForRequest(self._root, request).render(request)


def _resource(calls: FailingCalls) -> _Found:
    gateway: Any = SimpleNamespace(
        config=SimpleNamespace(downstream=SimpleNamespace(awaiting_timeout=30.0))
    )
    config = AdminConfig("tcp:0", TOKEN, True, None)
    return _Found(resource(gateway, calls, None, config))  # type: ignore[arg-type]


def _post(path: str, body: dict[str, Any]) -> DummyRequest:
    request = DummyRequest(path.encode().split(b"/")[1:])
    request.method = b"POST"
    request.path = path.encode()
    request.requestHeaders.addRawHeader(b"authorization", f"Bearer {TOKEN}".encode())
    request.content = io.BytesIO(json.dumps(body).encode())
    return request


class FailedDeferredTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def _answer(self, request: DummyRequest) -> dict[str, Any]:
        self.assertEqual(request.finished, 1)
        self.assertEqual(request.responseCode, 500)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"]
        )
        body = json.loads(b"".join(request.written))
        self.assertNotIn("Traceback", body["error"])
        self.assertNotIn("\n", body["error"])
        return body  # type: ignore[no-any-return]

    def test_failed_call_answers_500_json_and_logs(self) -> None:
        """A CALL whose Deferred fails later is answered 500 with a one-line JSON error, logged."""
        calls = FailingCalls()
        request = _post("/api/v1/chargepoints/CP1/calls", {"action": "Reset"})
        self.assertEqual(_resource(calls).render(request), NOT_DONE_YET)
        calls.pending.errback(RuntimeError("the session went away"))
        body = self._answer(request)
        self.assertEqual(body["error"], "internal error: RuntimeError: the session went away")
        self.assertTrue([e for e in self.logged if e.get("log_failure") is not None])
        self.flushLoggedErrors(RuntimeError)

    def test_failed_call_many_answers_500(self) -> None:
        """A many-CALL whose Deferred failed already is answered 500 with a JSON error."""
        request = _post("/api/v1/calls", {"action": "Reset", "identities": ["A", "B"]})
        self.assertEqual(_resource(FailingCalls()).render(request), NOT_DONE_YET)
        self.assertEqual(self._answer(request)["error"], "internal error: KeyError: 'boom'")
        self.flushLoggedErrors(KeyError)

    def test_client_gone_then_failure_writes_nothing(self) -> None:
        """A failure after the client went away is logged and nothing is written."""
        calls = FailingCalls()
        request = _post("/api/v1/chargepoints/CP1/calls", {"action": "Reset"})
        _resource(calls).render(request)
        # The client went away: notifyFinish() fails, as a real Request's does.
        request.processingFailed(Failure(ConnectionError("gone")))
        calls.pending.errback(RuntimeError("late"))
        self.assertEqual(request.written, [])
        self.assertEqual(request.finished, 0)
        self.flushLoggedErrors(RuntimeError)


class FanoutFailedDeferredTests(ClockTestCase):
    def test_supervisor_route_failure_answers_500(self) -> None:
        """The supervisor's fan-out answers 500 with a JSON error when its route fails."""
        from twisted.internet.testing import MemoryReactorClock

        from ocppgw.admin.fanout import Fanout
        from ocppgw.admin.routes import tree
        from ocppgw.config import parse

        config = parse(
            "[gateway]\nworkers = 2\n[listener:ws]\nendpoint = tcp:8080\n"
            f"[admin]\ntoken = {TOKEN}\n"
        )
        fanout = Fanout(config, [], self.clocks.add(MemoryReactorClock()))
        self.patch(fanout, "ask_all", lambda *a: fail(ValueError("bad reply\nsecond line")))
        request = _post("/api/v1/gateway", {})
        request.method = b"GET"
        self.assertEqual(_Found(tree(fanout, config.admin)).render(request), NOT_DONE_YET)
        self.assertEqual(request.finished, 1)
        self.assertEqual(request.responseCode, 500)
        body = json.loads(b"".join(request.written))
        self.assertEqual(body, {"error": "internal error: ValueError: bad reply"})
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
