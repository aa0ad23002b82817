# -*- test-case-name: tests.integration.test_admin_workers -*-
"""
How the supervisor's admin endpoint (:mod:`ocppgw.admin.fanout`) reaches
each worker's admin API: the worker as it is described, its reply, and the
UNIX socket that ``http://worker<N>/...`` goes to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

#: Seconds a worker has to answer anything but a CALL.
ASK_TIMEOUT = 5.0


class Worker(Protocol):
    """A worker as :class:`ocppgw.workers.WorkerProcess` describes it."""

    index: int
    pid: int | None
    gateway_id: str
    client_id: str
    admin_socket: str | None


@dataclass(frozen=True)
class Reply:
    """A worker's answer: ``status`` None when it could not be asked (``error`` says why)."""

    worker: Worker
    status: int | None
    body: bytes = b""
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return {"error": self.body.decode("utf-8", "replace")}


@implementer(IAgentEndpointFactory)
class WorkerSockets:
    """``http://worker<N>/...`` goes to worker N's admin socket."""

    def __init__(self, reactor: Any, workers: Sequence[Worker]) -> None:
        self._reactor = reactor
        self._workers = workers

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        worker = self._workers[int(uri.host.decode("ascii").removeprefix("worker"))]
        assert worker.admin_socket is not None
        return UNIXClientEndpoint(self._reactor, worker.admin_socket, timeout=ASK_TIMEOUT)
