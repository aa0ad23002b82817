# -*- test-case-name: tests.unit.session.test_session -*-
"""
What a session is told when it is made: :class:`SessionOptions`, and the
shape of the validators it may be given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ocppgw.interfaces import NO_EVENTS, CallJournal, IGatewayEvents
from ocppgw.ocpp.versions import ErrorKind
from ocppgw.session.flood import DEFAULT_BURST, DEFAULT_RATE

#: An Action becomes part of a topic; OCPP actions are plain identifiers.
ACTION = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


class Violation(Protocol):
    """What a validator reports (see :mod:`ocppgw.ocpp.validation`)."""

    @property
    def kind(self) -> ErrorKind: ...

    @property
    def description(self) -> str: ...


#: ``validate(version, action, is_request, payload)``: None when valid.
Validate = Callable[[str, str, bool, dict[str, Any]], Violation | None]


@dataclass(frozen=True)
class SessionOptions:
    #: Seconds the backend has to answer a charge point's CALL.
    upstream_timeout: float = 30.0
    #: Seconds the charge point has to answer a backend's CALL.
    downstream_timeout: float = 30.0
    #: Downstream CALLs that may wait behind the one in flight.
    max_queue: int = 100
    #: Seconds queued backend CALLs wait for a reconnection ([dnstream] offline_ttl).
    offline_ttl: float = 60.0
    #: Refuse a second upstream CALL while one is pending (OCPP-J 2.x: SHALL NOT).
    strict: bool = True
    #: Answer Heartbeat locally (and still publish it).
    local_heartbeat: bool = False
    #: Answer StatusNotification locally, with its empty result (and still publish it).
    local_status_notification: bool = False
    #: Restrict a charge point the backend answered Pending or Rejected
    #: ([gateway] enforce_registration; :mod:`ocppgw.session.registration`).
    enforce_registration: bool = True
    #: Schema validation of the charge point's messages, if any.
    validate_upstream: Validate | None = None
    #: Schema validation of the backend's messages, if any.
    validate_downstream: Validate | None = None
    #: Messages per second the charge point may send (0: no limit), and the
    #: burst beyond it ([listener:NAME] max_message_rate, max_message_burst).
    max_message_rate: int = DEFAULT_RATE
    max_message_burst: int = DEFAULT_BURST
    #: Told every message in and out, parsed once here (the admin counters).
    events: IGatewayEvents = NO_EVENTS
    #: Told of each backend CALL queued, sent and answered; None: not kept.
    journal: CallJournal | None = None
