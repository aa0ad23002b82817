# -*- test-case-name: tests.unit.listener.test_httpauth -*-
"""
The operator's HTTP authentication service (``[auth] http_url``).

- each question is one POST of a JSON object (:meth:`Question.body`) with
  ``Content-Type: application/json`` and the extra headers of
  ``http_headers``; a 2xx answer ``{"result": "allow" | "deny"}``, with
  ``"versions"`` (the subprotocols allowed) and ``"reason"`` optional,
  decides; anything else (a timeout after ``http_timeout``, a failed
  connection, another status, an unreadable answer) is an error, which the
  caller maps through ``http_on_error``;
- never blocks the reactor: Twisted's ``Agent``, a connection per request;
- answers are remembered ``http_cache`` seconds per identity and credentials
  (password, client certificate fingerprint: a cached allow never admits
  other credentials) and listener, at most :data:`MAX_CACHED` of them;
  errors are not;
- one request in flight per identity: handshakes with the same credentials
  share it, others wait for it to end and then look again;
- SIGHUP (:meth:`HTTPAuth.reload`) clears the cache and re-reads the headers.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from ocppgw.interfaces import NO_EVENTS, IGatewayEvents

if TYPE_CHECKING:
    from ocppgw.config import HTTPAuthConfig

#: Answers remembered at most; the oldest go first.
MAX_CACHED = 100_000

#: The largest answer read.
MAX_ANSWER = 65536


class ServiceError(Exception):
    """The service gave no usable answer."""


def read_headers(path: str) -> tuple[tuple[str, str], ...]:
    """
    The ``Name: value`` lines of ``path`` (blank lines and ``#`` comments skipped).

    :raises ValueError: naming the line that is not a header.
    """
    headers = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, colon, value = line.partition(":")
            name = name.strip()
            if not colon or not name or any(c in name for c in ' \t()<>@,;\\"/[]?={}'):
                raise ValueError(f"{path}:{number}: not a 'Name: value' header line")
            headers.append((name, value.strip()))
    return tuple(headers)


@dataclass(frozen=True)
class Question:
    """What the service is told of one handshake."""

    identity: str
    listener: str
    remote_address: str
    offered: Sequence[str]
    username: str | None = None
    password: bytes | None = None
    #: Profile 3: the client certificate's subject (RFC 4514), serial (hex) and
    #: SHA-256 fingerprint (hex).
    cert_subject: str | None = None
    cert_serial: str | None = None
    cert_fingerprint: str | None = None

    def key(self) -> bytes:
        """
        The cache key: the identity and the credentials, and the listener (a
        service may allow a charge point on one listener only), hashed: no
        password is kept.
        """
        password = None if self.password is None else self.password.hex()
        text = json.dumps([self.identity, password, self.cert_fingerprint, self.listener])
        return hashlib.sha256(text.encode("utf-8")).digest()

    def body(self) -> bytes:
        """The request body."""
        certificate = None
        if self.cert_fingerprint is not None:
            certificate = {
                "subject": self.cert_subject,
                "serial": self.cert_serial,
                "fingerprint": self.cert_fingerprint,
            }
        value = {
            "identity": self.identity,
            "username": self.username,
            "password": None if self.password is None else self.password.decode("utf-8", "replace"),
            "certificate": certificate,
            "remote_address": self.remote_address,
            "listener": self.listener,
            "subprotocols": list(self.offered),
        }
        return json.dumps(value).encode("utf-8")


@dataclass(frozen=True)
class Answer:
    """The service's decision."""

    allow: bool
    #: The subprotocols this charge point may use; None: any.
    versions: tuple[str, ...] | None = None
    reason: str = ""


def parse_answer(data: bytes) -> Answer:
    """:raises ServiceError: when ``data`` is not an answer."""
    try:
        value = json.loads(data)
    except ValueError:
        raise ServiceError("the answer is not JSON") from None
    if not isinstance(value, dict) or value.get("result") not in ("allow", "deny"):
        raise ServiceError('the answer has no "result": "allow" or "deny"')
    versions = value.get("versions")
    if versions is not None and (
        not isinstance(versions, list) or not all(isinstance(v, str) for v in versions)
    ):
        raise ServiceError('"versions" is not a list of strings')
    reason = value.get("reason", "")
    return Answer(
        value["result"] == "allow",
        None if versions is None else tuple(versions),
        reason if isinstance(reason, str) else str(reason),
    )


@implementer(IBodyProducer)
class _Body:
    """A request body of known bytes, written at once."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@dataclass
class _Flight:
    """The one request in flight for an identity, and who waits for it."""

    key: bytes
    waiters: list[Deferred[Answer]] = field(default_factory=list)


class HTTPAuth:
    """The HTTP authentication callout, shared by every listener."""

    def __init__(
        self,
        config: HTTPAuthConfig,
        clock: Any,
        agent: Any = None,
        events: IGatewayEvents = NO_EVENTS,
    ) -> None:
        self.config = config
        self.events = events
        self._clock = clock
        if agent is None:
            # A connection per request: a POST is not retried, so one sent on a
            # kept-alive connection the service has just closed would fail.
            # The cache keeps requests rare.
            agent = Agent(clock, connectTimeout=config.timeout)
        self._agent = agent
        self._url = config.url.encode("ascii")
        self._headers = read_headers(config.headers) if config.headers else ()
        #: key -> (when it expires, the answer); oldest first.
        self._cache: OrderedDict[bytes, tuple[float, Answer]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    def reload(self) -> None:
        """SIGHUP: forget every answer, read the headers file again."""
        headers = read_headers(self.config.headers) if self.config.headers else ()
        self._headers = headers
        self._cache.clear()

    def ask(self, question: Question) -> Deferred[Answer]:
        """The service's answer for ``question``: cached, shared, or asked now."""
        key = question.key()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > self._clock.seconds():
                self.events.auth_http("cache_hit")
                return succeed(cached[1])
            del self._cache[key]
        waiting: Deferred[Answer] = Deferred()
        flight = self._flights.get(question.identity)
        if flight is not None:
            flight.waiters.append(waiting)
            if flight.key == key:
                return waiting
            # Other credentials of the same identity: one request at a time.
            after: Deferred[Any] = Deferred()
            waiting.addBoth(lambda _: self.ask(question).chainDeferred(after))
            return after
        self._flights[question.identity] = _Flight(key, [waiting])
        self._request(question, key)
        return waiting

    def _request(self, question: Question, key: bytes) -> None:
        headers = Headers({"Content-Type": ["application/json"]})
        for name, value in self._headers:
            headers.addRawHeader(name, value)
        d = self._agent.request(b"POST", self._url, headers, _Body(question.body()))
        d.addCallback(self._read)
        d.addTimeout(self.config.timeout, self._clock)
        d.addCallbacks(self._answered, self._failed, (question, key), None, (question,))

    def _read(self, response: IResponse) -> Deferred[Answer]:
        code = response.code
        d: Deferred[bytes] = readBody(response)

        def decide(data: bytes) -> Answer:
            if not 200 <= code < 300:
                raise ServiceError(f"HTTP status {code}")
            if len(data) > MAX_ANSWER:
                raise ServiceError(f"the answer is over {MAX_ANSWER} bytes")
            return parse_answer(data)

        return d.addCallback(decide)

    def _answered(self, answer: Answer, question: Question, key: bytes) -> None:
        self.events.auth_http("allow" if answer.allow else "deny")
        if self.config.cache > 0:
            self._cache[key] = (self._clock.seconds() + self.config.cache, answer)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        for waiter in self._land(question):
            waiter.callback(answer)

    def _failed(self, failure: Failure, question: Question) -> None:
        self.events.auth_http("error")
        why = failure.getErrorMessage() or repr(failure.value)
        error = ServiceError(f"authentication service: {why}")
        for waiter in self._land(question):
            waiter.errback(Failure(error))

    def _land(self, question: Question) -> list[Deferred[Answer]]:
        flight = self._flights.pop(question.identity)
        return flight.waiters
