# -*- test-case-name: tests.integration.test_flight -*-
"""
``follow=true`` through the supervisor of ``[gateway] workers``: each
running worker's Server-Sent Events stream of the charge point, relayed
event by event (never a part of one), until the client goes away.  The
opening comment goes out once every worker's stream began: from then on,
every new frame is delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import CancelledError, DeferredList
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET, Request

from ocppgw.admin.asking import Worker

_log = Logger()


class _Events(Protocol):
    """One worker's stream: complete events written to the client's request."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        done, _, self._buffer = self._buffer.rpartition(b"\n\n")
        for event in done.split(b"\n\n") if done else ():
            if not event.startswith(b":"):  # each worker's own comment: ours went out
                self._request.write(event + b"\n\n")


def _failed(failure: Failure, index: int) -> None:
    if not failure.check(CancelledError):
        _log.warn("follow: worker {i} did not answer: {f}", i=index, f=failure.getErrorMessage())


def follow(
    request: Request, agent: Any, workers: Sequence[Worker], uri: str, token: str | None
) -> int:
    """Relay ``uri`` (a ``follow=true`` request) of every running worker to ``request``."""
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"text/event-stream")
    request.setHeader(b"cache-control", b"no-store")
    headers = Headers()
    if token is not None:
        headers.addRawHeader(b"authorization", f"Bearer {token}".encode())
    streams: list[_Events] = []
    pending: list[Any] = []

    def stream(response: Any) -> None:
        events = _Events(request)
        streams.append(events)
        response.deliverBody(events)

    for worker in workers:
        if worker.pid is not None and worker.admin_socket is not None:
            d = agent.request(b"GET", f"http://worker{worker.index}{uri}".encode(), headers)
            pending.append(d)
            d.addCallbacks(stream, _failed, errbackArgs=(worker.index,))

    gone: list[object] = []

    def stop(why: object) -> None:
        gone.append(why)
        for d in pending:
            d.cancel()
        for events in streams:
            transport: Any = events.transport
            if transport is not None:
                transport.stopProducing()

    request.notifyFinish().addBoth(stop)
    # Each worker follows once its answer began: only then is the follow on.
    DeferredList(pending).addCallback(lambda _: gone or request.write(b": following\n\n"))
    return NOT_DONE_YET
