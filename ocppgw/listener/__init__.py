"""
A refused WebSocket handshake: the HTTP status, the reason, extra headers.

Its own module so that the admission checks (:mod:`ocppgw.listener.admission`) and the
WebSocket layer (:mod:`ocppgw.connection`, which re-exports it) share it
without importing each other.
"""

from __future__ import annotations

from autobahn.websocket.types import ConnectionDeny


class Refused(ConnectionDeny):
    """A refused handshake, with the HTTP headers that go with the status."""

    def __init__(self, code: int, reason: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(code, reason)  # type: ignore[no-untyped-call]
        self.headers = headers or []
