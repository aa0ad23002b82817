# -*- test-case-name: tests.integration.test_admin_workers -*-
"""
``[admin] endpoint`` of the supervisor of ``[gateway] workers = N``: every
route answered for all workers.

Each worker serves its own admin API on a UNIX socket of the supervisor's
private directory (:mod:`ocppgw.workers`); the supervisor serves
:mod:`ocppgw.admin.routes`'s tree, which checks the token, and asks the
workers through those sockets, with the same token:

* ``/healthz``: 200 only while every worker is healthy; 503 naming each
  worker that is not (its own reasons, or that it is being restarted).
* ``/metrics``: every worker's series with a ``worker`` label (its index),
  and ``ocppgw_worker_up`` per worker.
* ``GET /api/v1/chargepoints``: the workers' pages merged in identity order
  (the cursor is an identity, so it pages over all of them); each charge
  point has ``worker``.
* ``GET``/``DELETE /api/v1/chargepoints/{id}`` and its CALLs: the worker that
  holds the charge point (``POST /api/v1/calls``: each identity's outcome
  from the worker that holds it).
* ``GET /api/v1/gateway``: sums over the workers, and ``worker_states``.
* ``GET /api/v1/chargepoints/{id}/messages`` (and ``.jsonl``): the records of
  every worker that has a history of it, merged in time order; ``follow``
  relays each worker's events (:mod:`ocppgw.admin.relay`).

Anything else goes to worker 0, which answers as one gateway does (404, 405).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import MultiService
from twisted.internet.defer import (
    Deferred,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET, Request

from ocppgw import __version__
from ocppgw.admin import relay
from ocppgw.admin.api import MAX_BODY
from ocppgw.admin.asking import ASK_TIMEOUT, Reply, Worker, WorkerSockets
from ocppgw.admin.history import Filters
from ocppgw.admin.messages import filters, query_of, render
from ocppgw.admin.routes import Route, audit_passed_on, internal_error, later, send, tree
from ocppgw.admin.service import serve
from ocppgw.admin.views import DEFAULT_LIMIT, encode_cursor
from ocppgw.config import Config
from ocppgw.ocpp.timestamps import rfc3339

#: Seconds beyond a CALL's own timeout.
SLACK = 5.0


#: Asks the workers for one method of a route: ``(method, uri, body)`` to
#: the status and body of the answer (bytes: the merged /metrics).
Ask = Callable[[str, str, "bytes | None"], "Deferred[tuple[int, Any]]"]


class Fanout:
    """Every admin route, for all workers (:class:`ocppgw.admin.routes.Routes`)."""

    def __init__(self, config: Config, workers: Sequence[Worker], reactor: Any) -> None:
        self._config = config
        self._workers = workers
        self._reactor = reactor
        #: Kept-alive connections: one per worker, not one per request.
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self._agent = Agent.usingEndpointFactory(
            reactor, WorkerSockets(reactor, workers), pool=self.pool
        )
        self._started = reactor.seconds()
        #: Worker 0 answers as one gateway does (404).
        self.nowhere = self._route()

    # --- the routes ---

    def healthz(self) -> Route:
        return self._route(
            GET=lambda _, uri, __: self.ask_all("GET", uri).addCallback(self._health)
        )

    def metrics(self) -> Route:
        return self._route(
            GET=lambda _, uri, __: self.ask_all("GET", uri).addCallback(self._metrics)
        )

    def gateway(self) -> Route:
        return self._route(GET=lambda _, uri, __: self.ask_all("GET", uri).addCallback(self._info))

    def chargepoints(self) -> Route:
        return self._route(
            GET=lambda _, uri, __: self.ask_all("GET", uri).addCallback(self._page, uri)
        )

    def chargepoint(self, identity: str) -> Route:
        def holder(method: str, uri: str, _: bytes | None) -> Deferred[tuple[int, Any]]:
            return self.ask_all(method, uri).addCallback(self._holder, method == "DELETE")

        return self._route(GET=holder, DELETE=holder)

    def call(self, identity: str) -> Route:
        return self._route(POST=partial(self._call, identity))

    def calls(self) -> Route:
        return self._route(
            POST=lambda method, uri, body: self.ask_all(
                method, uri, body, self._wait(body)
            ).addCallback(self._calls)
        )

    def messages(self, identity: str, lines: bool) -> Route:
        return Route({"GET": partial(self._messages, identity, lines)}, self.nowhere.render)

    def _messages(self, identity: str, lines: bool, request: Request) -> int:
        query = query_of(request)
        chosen = filters(query)
        uri = (
            (request.uri or b"/").decode("utf-8", "replace").replace("/messages.jsonl", "/messages")
        )
        if query.get("follow") == "true" and not lines:
            return relay.follow(request, self._agent, self._workers, uri, self._config.admin.token)
        finished: list[object] = []
        request.notifyFinish().addBoth(finished.append)

        def answer(replies: list[Reply]) -> None:
            if not finished:
                status, body = _merged(replies, chosen)
                out = render(request, body, lines) if status == 200 else send(request, status, body)
                request.write(out)
                request.finish()

        d = self.ask_all("GET", uri).addCallback(answer)
        d.addErrback(internal_error, request, finished)
        return NOT_DONE_YET

    # --- asking the workers ---

    def ask(
        self,
        worker: Worker,
        method: str,
        uri: str,
        body: bytes | None = None,
        timeout: float = ASK_TIMEOUT,
    ) -> Deferred[Reply]:
        """``method uri`` of one worker's admin API; never fails."""
        if worker.pid is None or worker.admin_socket is None:
            return succeed(Reply(worker, None, error="not running (being restarted)"))
        headers = Headers({b"content-type": [b"application/json"]})
        if self._config.admin.token is not None:
            headers.addRawHeader(b"authorization", f"Bearer {self._config.admin.token}".encode())
        producer = None if body is None else FileBodyProducer(BytesIO(body))
        target = f"http://worker{worker.index}{uri}".encode()
        d: Deferred[Any] = self._agent.request(method.encode("ascii"), target, headers, producer)

        def read(response: Any) -> Deferred[Reply]:
            return readBody(response).addCallback(lambda data: Reply(worker, response.code, data))

        def failed(f: Failure) -> Reply:
            return Reply(worker, None, error=f"its admin API did not answer: {f.getErrorMessage()}")

        return d.addCallback(read).addTimeout(timeout, self._reactor).addErrback(failed)

    def ask_all(
        self, method: str, uri: str, body: bytes | None = None, timeout: float = ASK_TIMEOUT
    ) -> Deferred[list[Reply]]:
        return gatherResults([self.ask(w, method, uri, body, timeout) for w in self._workers])

    # --- plumbing ---

    def _route(self, **methods: Ask) -> Route:
        """A route whose ``methods`` ask the workers; any other method goes to worker 0."""
        asks = {method: partial(self._render, ask) for method, ask in methods.items()}
        return Route(asks, partial(self._render, self._first))

    def _render(self, ask: Ask, request: Request) -> int:
        method = (request.method or b"GET").decode("ascii", "replace")
        uri = (request.uri or b"/").decode("utf-8", "replace")
        audit_passed_on(request, method, uri)
        body = None
        if method in ("POST", "PUT", "PATCH"):
            assert request.content is not None
            body = request.content.read(MAX_BODY + 1)
        return later(request, maybeDeferred(ask, method, uri, body))

    def _first(self, method: str, uri: str, body: bytes | None) -> Deferred[tuple[int, Any]]:
        """Worker 0's answer, as one gateway's (404, 405)."""
        return self.ask(self._workers[0], method, uri, body).addCallback(self._one)

    @inlineCallbacks
    def _call(self, identity: str, method: str, uri: str, body: bytes | None) -> Any:
        shown = yield self.ask_all("GET", "/api/v1/chargepoints/" + quote(identity, safe=""))
        holder = next(
            (r.worker for r in shown if r.status == 200 and r.json().get("state") == "connected"),
            self._workers[0],  # it answers 404 not connected (or 400) as one gateway
        )
        return self._one((yield self.ask(holder, method, uri, body, self._wait(body))))

    def _wait(self, body: bytes | None) -> float:
        """How long a CALL's answer may take: its timeout, and some."""
        timeout: Any = None
        try:
            timeout = json.loads(body or b"{}").get("timeout")
        except (ValueError, AttributeError):
            pass
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            timeout = self._config.downstream.awaiting_timeout
        return min(float(timeout), 3600.0) + SLACK

    @staticmethod
    def _one(reply: Reply) -> tuple[int, Any]:
        if reply.status is None:
            return 502, {
                "error": f"worker {reply.worker.index}: {reply.error}",
                "worker": reply.worker.index,
            }
        return reply.status, reply.json()

    # --- merging ---

    def _health(self, replies: list[Reply]) -> tuple[int, Any]:
        reasons: list[str] = []
        workers: list[dict[str, Any]] = []
        for r in replies:
            body = {} if r.status is None else r.json()
            if r.status != 200:
                why = body.get("reasons") or [r.error or f"answered {r.status}"]
                reasons.extend(f"worker {r.worker.index}: {w}" for w in why)
            workers.append({"worker": r.worker.index, "healthy": r.status == 200, **body})
        out = {"status": "unavailable" if reasons else "ok", "gateway_id": self._config.gateway_id}
        return (
            (503, {**out, "workers": workers, "reasons": reasons})
            if reasons
            else (200, {**out, "workers": workers})
        )

    def _metrics(self, replies: list[Reply]) -> tuple[int, bytes]:
        families: dict[str, Metric] = {}
        up = GaugeMetricFamily(
            "ocppgw_worker_up", "1 while the worker's metrics could be read.", labels=["worker"]
        )
        for r in replies:
            up.add_metric([str(r.worker.index)], 1 if r.status == 200 else 0)
            if r.status != 200:
                continue
            for family in text_string_to_metric_families(r.body.decode("utf-8", "replace")):
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for s in family.samples:
                    labels = {**s.labels, "worker": str(r.worker.index)}
                    merged.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families([up, *families.values()]))
        return 200, generate_latest(registry)

    def _info(self, replies: list[Reply]) -> tuple[int, Any]:
        bodies = [r.json() if r.status == 200 else None for r in replies]
        answered = [b for b in bodies if b is not None]
        listeners = []
        for listener in self._config.listeners:
            each = [li for b in answered for li in b["listeners"] if li["name"] == listener.name]
            merged = {**each[0]} if each else {"name": listener.name, "port": None, "error": None}
            # Listening only when every worker listens.
            merged["listening"] = len(each) == len(replies) and all(li["listening"] for li in each)
            listeners.append(merged)
        mqtt = self._config.mqtt
        return 200, {
            "gateway_id": self._config.gateway_id,
            "version": __version__,
            "started_at": rfc3339(self._started),
            "uptime_seconds": round(self._reactor.seconds() - self._started, 3),
            "listeners": listeners,
            "workers": len(replies),
            "worker_states": [
                {
                    "worker": r.worker.index,
                    "pid": r.worker.pid,
                    "gateway_id": r.worker.gateway_id,
                    "client_id": r.worker.client_id,
                    "state": _state(b is not None, r.worker.pid),
                    "error": r.error or None,
                    "gateway": b,
                }
                for r, b in zip(replies, bodies, strict=True)
            ],
            "charge_points": {
                k: sum(b["charge_points"][k] for b in answered) for k in ("connected", "grace")
            },
            "mqtt": {
                "broker": f"{mqtt.host}:{mqtt.port}",
                "connected": len(answered) == len(replies)
                and all(b["mqtt"]["connected"] for b in answered),
                **{
                    k: sum(b["mqtt"][k] for b in answered)
                    for k in ("buffered_publishes", "unacknowledged_publishes")
                },
            },
            # Every worker runs the same code: the first answer's speed-ups.
            "speedups": answered[0].get("speedups", []) if answered else [],
        }

    def _page(self, replies: list[Reply], uri: str) -> tuple[int, Any]:
        pages = []
        for r in replies:
            if r.status != 200:
                return self._one(r)  # a bad query: every worker says the same
            pages.append((r.worker.index, r.json()))
        listed = sorted(
            ({**c, "worker": w} for w, p in pages for c in p["chargepoints"]),
            key=lambda c: c["identity"],
        )
        # Each worker checked the query already: limit is a number in range.
        limit = int(parse_qs(urlsplit(uri).query).get("limit", [DEFAULT_LIMIT])[0])
        more = len(listed) > limit or any(p["next_cursor"] for _, p in pages)
        shown = listed[:limit]
        # Any worker's cursor encodes an identity the same way: reuse one for ours.
        cursor = None
        if more and shown:
            cursor = encode_cursor(shown[-1]["identity"])
        return 200, {"chargepoints": shown, "next_cursor": cursor}

    def _holder(self, replies: list[Reply], kick: bool) -> tuple[int, Any]:
        found = [r for r in replies if r.status == 200]
        if not kick:  # shown by the worker that holds it, else by one that remembers it
            found.sort(key=lambda r: r.json().get("state") == "offline")
        if found:
            return 200, {**found[0].json(), "worker": found[0].worker.index}
        answered = [r for r in replies if r.status is not None]
        return self._one(answered[0] if answered else replies[0])

    def _calls(self, replies: list[Reply]) -> tuple[int, Any]:
        answered = [r for r in replies if r.status is not None]
        if not answered or any(r.status != 200 for r in answered):
            return self._one(next((r for r in answered if r.status != 200), replies[0]))
        bodies = [(r.worker.index, r.json()) for r in answered]
        results: dict[str, Any] = {}
        for worker, body in bodies:
            for identity, outcome in body["results"].items():
                if identity not in results or results[identity]["status"] == 404:
                    if outcome["status"] != 404:
                        outcome = {**outcome, "worker": worker}
                    results[identity] = outcome
        return 200, {"action": bodies[0][1]["action"], "results": results}


def _merged(replies: list[Reply], chosen: Filters) -> tuple[int, Any]:
    """Every worker's records of a charge point in time order, the newest ``limit``."""
    found = [r.json() for r in replies if r.status == 200]
    if not found:
        answered = [r for r in replies if r.status is not None]
        reply = answered[0] if answered else replies[0]
        return reply.status or 502, reply.json() if reply.status else {"error": reply.error}
    merged = sorted((record for records in found for record in records), key=lambda r: r["Time"])
    return 200, merged[-chosen.limit :]


def _state(answered: bool, pid: int | None) -> str:
    return "running" if answered else "restarting" if pid is None else "unreachable"


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class FanoutService(MultiService):
    """``[admin] endpoint`` of the supervisor."""

    def __init__(self, config: Config, workers: Sequence[Worker], reactor: Any) -> None:
        super().__init__()
        self._fanout = Fanout(config, workers, reactor)
        serve(self, config.admin, tree(self._fanout, config.admin), reactor)

    def stopService(self) -> Any:
        d = super().stopService()
        self._fanout.pool.closeCachedConnections()
        return d
