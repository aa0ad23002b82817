# -*- test-case-name: tests.unit.router.test_router,tests.unit.router.test_envelope_promises -*-
"""
The error envelopes the router publishes itself, in place of a session's answer.

A downstream message that reaches no session's rules is answered here, once:
``Invalid`` when it cannot be read (naming its UniqueId, or ``"-1"`` when even
that cannot be found), ``Offline`` for a charge point no instance has,
``Shutdown`` while the gateway stops, ``Internal`` when handling it failed.
Each carries ``Origin: gateway`` and its time (docs/topics.md), and is kept until the
broker takes it (:class:`ocppgw.session.owed.Owed`): never a log line alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, CodecError, Envelope, GatewayError
from ocppgw.ocpp.messages import CallError, unique_id_of
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.session.owed import Owed
from ocppgw.session.rules import Session

_log = Logger()


class Answers:
    """The router's own error envelopes, and the ones it still owes."""

    def __init__(
        self,
        clock: IReactorTime,
        publish: Callable[[Envelope], Deferred[None]],
        sessions: Mapping[str, Session],
    ) -> None:
        self._clock = clock
        #: The router's sessions (kept there), for the Action of an answer to one.
        self._sessions = sessions
        #: Error envelopes about charge points no session holds, not published yet.
        self._owed = Owed(clock, publish, "router")

    def __len__(self) -> int:
        """How many error envelopes wait to be published again."""
        return len(self._owed)

    def reject(
        self, identity: str, version: str | None, error: CodecError, topic: str, payload: bytes
    ) -> None:
        """Answer a downstream message that cannot be read: Invalid."""
        why = f"invalid downstream message on {topic}: {error}"
        _log.warn("{cid}: {why}", cid=identity, why=why)
        unique_id = error.unique_id or unique_id_of(payload) or "-1"
        action = error.action
        session = self._sessions.get(identity)
        if action is None and session is not None and error.unique_id is not None:
            action = session.action_of(error.unique_id)
        self.error(identity, version, unique_id, GatewayError.INVALID, why, action)

    def error(
        self,
        identity: str,
        version: str | None,
        unique_id: str,
        code: GatewayError,
        description: str,
        action: str | None,
    ) -> None:
        """Answer the message ``unique_id`` for ``identity`` with the error ``code``."""
        envelope = Envelope(
            CallError(unique_id, code.value, description, {}, action),
            version=version,
            charge_point=identity,
            # Every envelope the gateway publishes carries when (docs/topics.md).
            timestamp=rfc3339(self._clock.seconds()),
            origin=ORIGIN_GATEWAY,
        )
        # No session holds these: the router owes them itself (never a log line alone).
        self._owed.publish(envelope)
