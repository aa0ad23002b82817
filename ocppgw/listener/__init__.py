# -*- test-case-name: tests.unit.listener.test_handshake,tests.unit.listener.test_admission -*-
"""
Stage: the listener, where a charge point arrives.

The listening port of a ``tcp:`` endpoint (:mod:`~ocppgw.listener.accepting`),
admission control (:mod:`~ocppgw.listener.throttle`), TLS
(:mod:`~ocppgw.listener.tls`), the HTTP upgrade and its decisions
(:mod:`~ocppgw.listener.factory`), who may connect
(:mod:`~ocppgw.listener.admission`, with the credentials file, failed-login
limits and trusted proxies), and ``ocppgw-passwd``
(:mod:`~ocppgw.listener.passwd`).  Every refusal is a :class:`Refused`.

May import: :mod:`ocppgw.connection` (the protocol it builds), the stages
below it, Autobahn and pyOpenSSL; the configuration's types for the type
checker only.
"""

from __future__ import annotations

from autobahn.websocket.types import ConnectionDeny


class Refused(ConnectionDeny):
    """A refused handshake, with the HTTP headers that go with the status."""

    def __init__(self, code: int, reason: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(code, reason)  # type: ignore[no-untyped-call]
        self.headers = headers or []
