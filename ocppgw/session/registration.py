# -*- test-case-name: tests.unit.session.test_registration -*-
"""
A charge point's registration, as the backend's BootNotification answer on
this connection set it, and the CALLs the charge point may send while it is
not Accepted ([gateway] enforce_registration).

The rules, per version (the CALLERROR is SecurityError in each):

- OCPP 1.6 §4.2 BootNotification: while Pending, the charge point "SHALL
  NOT send request messages to the Central System unless it has been
  instructed by the Central System to do so with a TriggerMessage.req";
  §4.2.1 (Rejected): it "SHALL NOT send any OCPP message to the Central
  System until the aforementioned retry interval has expired" (a new
  BootNotification). OCPP-J 1.6 errata (J16E 3.8): a CALL other than
  BootNotification before the charge point is Accepted should get
  SecurityError.
- OCPP 2.0.1 B02 (Pending): B02.FR.02, the station sends no CALL but
  BootNotificationRequest unless a TriggerMessageRequest asked for it;
  B02.FR.09, any other CALL gets CALLERROR SecurityError. B03 (Rejected):
  B03.FR.02, no OCPP message until the interval expired; B03.FR.07, any CALL
  other than BootNotificationRequest gets CALLERROR SecurityError.
- OCPP 2.1: the same use cases B02/B03 with the same requirements.

A BootNotification is always relayed (it is how the charge point registers
again). A charge point whose BootNotification got no answer on this
connection (one that reconnected without booting: OCPP-J Part 4 §5.4 tells
it not to repeat it) is not restricted: the rules begin "has received a
BootNotificationResponse". A CALL asked for by a TriggerMessage the backend
sent while not Accepted is let through once (the TriggerMessage's
``requestedMessage``, which names the CALL's Action; the 2.x
certificate triggers name SignCertificate).

What the texts ask of the central system itself: while Rejected, 2.0.1 and
2.1 B03.FR.03 say it SHALL NOT initiate any message (and B03.FR.07's station
would not answer), so the gateway, which is part of the central system,
sends no backend CALL then and answers it ``NotAccepted``
(:meth:`Registration.backend_refusal`); 1.6 §4.2.1 only says the Central
System "SHOULD NOT initiate any", so 1.6 CALLs are relayed.  While Pending
the central system MAY send requests (1.6 §4.2, 2.0.1 B02): relayed, the
RemoteStart/RequestStart a charge point must then refuse included (its
answer, not the gateway's).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: The backend's BootNotification statuses (the same in 1.6, 2.0.1 and 2.1).
ACCEPTED = "Accepted"
PENDING = "Pending"
REJECTED = "Rejected"
STATUSES = (ACCEPTED, PENDING, REJECTED)

#: The 2.x TriggerMessage values that do not name the Action they trigger.
TRIGGERED_ACTION = {
    "SignChargingStationCertificate": "SignCertificate",
    "SignV2GCertificate": "SignCertificate",
    "SignCombinedCertificate": "SignCertificate",
}

#: Where each version's rule is written, for the CALLERROR's description.
CLAUSES = {
    "ocpp1.6": {PENDING: "OCPP 1.6 §4.2", REJECTED: "OCPP 1.6 §4.2.1"},
    "ocpp2.0.1": {PENDING: "OCPP 2.0.1 B02.FR.09", REJECTED: "OCPP 2.0.1 B03.FR.07"},
    "ocpp2.1": {PENDING: "OCPP 2.1 B02.FR.09", REJECTED: "OCPP 2.1 B03.FR.07"},
}


class Registration:
    """One connection's registration status, and the CALLs a TriggerMessage asked for."""

    __slots__ = ("_triggered", "_version", "enforce", "status")

    def __init__(self, version: str, enforce: bool) -> None:
        self._version = version
        self.enforce = enforce
        #: The backend's last BootNotification answer here; None: none yet.
        self.status: str | None = None
        #: Actions a TriggerMessage asked for while not Accepted, and how
        #: often; None until one does (most connections never see one).
        self._triggered: Counter[str] | None = None

    def answered(self, payload: Any) -> bool:
        """
        The backend answered the charge point's BootNotification with
        ``payload``; whether that changed the status.
        """
        status = payload.get("status") if isinstance(payload, dict) else None
        if not isinstance(status, str) or status not in STATUSES:
            return False
        if status == ACCEPTED:
            self._triggered = None
        changed, self.status = status != self.status, status
        return changed

    def trigger(self, payload: Any) -> None:
        """The backend sends the charge point a TriggerMessage with ``payload``."""
        if self.status in (None, ACCEPTED) or not isinstance(payload, dict):
            return
        requested = payload.get("requestedMessage")
        if isinstance(requested, str):
            if self._triggered is None:
                self._triggered = Counter()
            self._triggered[TRIGGERED_ACTION.get(requested, requested)] += 1

    def refusal(self, action: str) -> str | None:
        """Why the charge point may not send a CALL ``action`` now, or None: relay it."""
        status = self.status
        if not self.enforce or status in (None, ACCEPTED) or action == "BootNotification":
            return None
        triggered = self._triggered
        if status == PENDING and triggered is not None and triggered[action] > 0:
            triggered[action] -= 1
            return None
        clause = CLAUSES.get(self._version, CLAUSES["ocpp2.1"])[status]
        return (
            f"registration is {status}: only BootNotification"
            + (" and the CALLs a TriggerMessage asked for" if status == PENDING else "")
            + f" may be sent ({clause})"
        )

    def backend_refusal(self) -> str | None:
        """
        Why the backend's CALL may not go to the charge point now, or None:
        send it.  Only a 2.x charge point that is Rejected: B03.FR.03.
        """
        if not self.enforce or self.status != REJECTED or self._version == "ocpp1.6":
            return None
        name = "OCPP 2.1" if self._version == "ocpp2.1" else "OCPP 2.0.1"
        return (
            "not sent: registration is Rejected, and the central system initiates "
            f"no message then ({name} B03.FR.03)"
        )
