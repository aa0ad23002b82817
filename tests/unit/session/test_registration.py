"""Registration enforced (issue 25, point 2): what a charge point the backend
answered Pending or Rejected may send, per version."""

from __future__ import annotations

from twisted.internet.task import Clock

from ocppgw.admin.views import summary
from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import Call, CallResult
from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201
from ocppgw.session.registration import Registration
from ocppgw.session.rules import Session, SessionOptions
from tests.clocks import SessionsTestCase, made
from tests.fakes import FakeConnection, FakeRouter

VERSIONS = (OCPP16, OCPP201, OCPP21)
HEARTBEAT = '[2,"h1","Heartbeat",{}]'


def make(version: str, **options: object) -> tuple[Session, FakeConnection, FakeRouter, Clock]:
    connection, router, clock = FakeConnection(), FakeRouter(), Clock()
    opts = SessionOptions(**options)  # type: ignore[arg-type]
    session = made(Session("CP1", version, connection, router, clock, opts), clock)
    return session, connection, router, clock


def boot(session: Session, connection: FakeConnection, status: str) -> None:
    """The charge point boots and the backend answers ``status``."""
    session.frame_received('[2,"b1","BootNotification",{}]')
    session.envelope_received(
        Envelope(CallResult("b1", {"status": status, "interval": 10, "currentTime": "t"}))
    )
    assert connection.sent()[-1][:2] == [3, "b1"]


class RegistrationRulesTests(SessionsTestCase):
    def test_not_booted_relays(self) -> None:
        """A charge point with no BootNotification answered on its connection is not
        restricted: its CALLs are published."""
        for version in VERSIONS:
            session, _, router, _ = make(version)
            session.frame_received(HEARTBEAT)
            self.assertEqual([e.message.action for e in router.envelopes], ["Heartbeat"])
            self.assertEqual(session.registration, None)

    def test_pending_and_rejected_get_security_error(self) -> None:
        """Pending or Rejected (1.6 §4.2/§4.2.1, 2.x B02.FR.09/B03.FR.07): a CALL other
        than BootNotification gets CALLERROR SecurityError naming the clause, unpublished."""
        clauses = {
            (OCPP16, "Pending"): "OCPP 1.6 §4.2",
            (OCPP16, "Rejected"): "OCPP 1.6 §4.2.1",
            (OCPP201, "Pending"): "OCPP 2.0.1 B02.FR.09",
            (OCPP201, "Rejected"): "OCPP 2.0.1 B03.FR.07",
            (OCPP21, "Pending"): "OCPP 2.1 B02.FR.09",
            (OCPP21, "Rejected"): "OCPP 2.1 B03.FR.07",
        }
        for (version, status), clause in clauses.items():
            session, connection, router, _ = make(version)
            boot(session, connection, status)
            self.assertEqual(session.registration, status)
            session.frame_received(HEARTBEAT)
            error = connection.sent()[-1]
            self.assertEqual(error[:3], [4, "h1", "SecurityError"])
            self.assertIn(f"registration is {status}", error[3])
            self.assertIn(clause, error[3])
            self.assertEqual([e.message.action for e in router.envelopes], ["BootNotification"])

    def test_boot_notification_always_relayed(self) -> None:
        """While Pending or Rejected a new BootNotification is published."""
        for version in VERSIONS:
            for status in ("Pending", "Rejected"):
                session, connection, router, _ = make(version)
                boot(session, connection, status)
                session.frame_received('[2,"b2","BootNotification",{}]')
                self.assertEqual(
                    [e.message.action for e in router.envelopes],
                    ["BootNotification", "BootNotification"],
                )

    def test_accepted_lifts_the_rule(self) -> None:
        """Pending, then Accepted on a new BootNotification: every CALL is published again,
        and the router is told of each change."""
        for version in VERSIONS:
            session, connection, router, _ = make(version)
            boot(session, connection, "Pending")
            session.frame_received('[2,"b2","BootNotification",{}]')
            accepted = {"status": "Accepted", "interval": 10, "currentTime": "t"}
            session.envelope_received(Envelope(CallResult("b2", accepted)))
            session.frame_received(HEARTBEAT)
            self.assertEqual(session.registration, "Accepted")
            self.assertEqual(router.envelopes[-1].message.action, "Heartbeat")
            # The router is told each change once (the presence carries it).
            self.assertEqual(router.registered_as, [("CP1", "Pending"), ("CP1", "Accepted")])

    def test_triggered_call_allowed_once_while_pending(self) -> None:
        """Pending (1.6 §4.2, B02.FR.09): the CALL a TriggerMessage asked for is published
        once; a second one gets SecurityError."""
        for version in VERSIONS:
            session, connection, router, _ = make(version)
            boot(session, connection, "Pending")
            session.envelope_received(
                Envelope(Call("t1", "TriggerMessage", {"requestedMessage": "Heartbeat"}))
            )
            session.frame_received('[3,"t1",{"status":"Accepted"}]')
            session.frame_received(HEARTBEAT)
            self.assertEqual(router.envelopes[-1].message.action, "Heartbeat")
            session.envelope_received(Envelope(CallResult("h1", {"currentTime": "t"})))
            session.frame_received('[2,"h2","Heartbeat",{}]')
            self.assertEqual(connection.sent()[-1][:3], [4, "h2", "SecurityError"])

    def test_trigger_does_not_open_rejected(self) -> None:
        """Rejected (1.6 §4.2.1, B03.FR.07): a TriggerMessage allows nothing."""
        for version in VERSIONS:
            session, connection, _, _ = make(version)
            boot(session, connection, "Rejected")
            session.envelope_received(
                Envelope(Call("t1", "TriggerMessage", {"requestedMessage": "Heartbeat"}))
            )
            session.frame_received('[3,"t1",{"status":"Accepted"}]')
            session.frame_received(HEARTBEAT)
            self.assertEqual(connection.sent()[-1][:3], [4, "h1", "SecurityError"])

    def test_backend_calls_to_a_rejected_2x_charge_point_answered_not_accepted(self) -> None:
        """
        Rejected, 2.0.1 and 2.1 (B03.FR.03: the central system initiates nothing):
        the backend's CALL is not sent and gets one NotAccepted error envelope naming
        the clause; a copy of it gets nothing more.  1.6 (§4.2.1, a SHOULD NOT) and
        Pending (the central system MAY send requests) relay it.
        """
        reset = Call("r1", "Reset", {"type": "Soft"})
        for version, status, relayed in (
            (OCPP201, "Rejected", False),
            (OCPP21, "Rejected", False),
            (OCPP16, "Rejected", True),
            (OCPP201, "Pending", True),
            (OCPP16, "Pending", True),
        ):
            session, connection, router, _ = make(version)
            boot(session, connection, status)
            session.envelope_received(Envelope(reset))
            session.envelope_received(Envelope(reset))  # a QoS 1 copy
            sent = [f[:3] for f in connection.sent()[1:]]
            errors = [e.message for e in router.envelopes[1:]]
            if relayed:
                self.assertEqual(sent, [[2, "r1", "Reset"]], (version, status))
                self.assertEqual(errors, [], (version, status))
            else:
                self.assertEqual(sent, [], (version, status))
                (error,) = errors
                self.assertEqual((error.unique_id, error.error_code), ("r1", "NotAccepted"))
                self.assertIn("B03.FR.03", error.error_description)

    def test_accepted_again_sends_backend_calls(self) -> None:
        """A 2.0.1 charge point Rejected, then Accepted on a new BootNotification: the
        backend's CALLs are sent again; with enforce_registration = false they always are."""
        session, connection, _, _ = make(OCPP201)
        boot(session, connection, "Rejected")
        session.frame_received('[2,"b2","BootNotification",{}]')
        accepted = {"status": "Accepted", "interval": 10, "currentTime": "t"}
        session.envelope_received(Envelope(CallResult("b2", accepted)))
        session.envelope_received(Envelope(Call("r1", "Reset", {"type": "Soft"})))
        self.assertEqual(connection.sent()[-1][:3], [2, "r1", "Reset"])
        session, connection, _, _ = make(OCPP201, enforce_registration=False)
        boot(session, connection, "Rejected")
        session.envelope_received(Envelope(Call("r1", "Reset", {"type": "Soft"})))
        self.assertEqual(connection.sent()[-1][:3], [2, "r1", "Reset"])

    def test_admin_view_shows_registration(self) -> None:
        """The admin API's charge point view carries the registration status."""
        session, connection, _, _ = make(OCPP16)
        self.assertIsNone(summary(session, None)["registration"])
        boot(session, connection, "Pending")
        self.assertEqual(summary(session, None)["registration"], "Pending")

    def test_enforce_off_relays(self) -> None:
        """enforce_registration = false: a Pending charge point's CALLs are published."""
        session, connection, router, _ = make(OCPP201, enforce_registration=False)
        boot(session, connection, "Pending")
        session.frame_received(HEARTBEAT)
        self.assertEqual(router.envelopes[-1].message.action, "Heartbeat")
        self.assertEqual(session.registration, "Pending")


def test_certificate_triggers_name_sign_certificate() -> None:
    """2.x: a SignV2GCertificate trigger while Pending lets one SignCertificate through."""
    registration = Registration(OCPP201, True)
    registration.answered({"status": "Pending"})
    registration.trigger({"requestedMessage": "SignV2GCertificate"})
    assert registration.refusal("SignCertificate") is None
    assert registration.refusal("SignCertificate") is not None


def test_unknown_status_ignored() -> None:
    """An answer without a known status leaves the registration as it was."""
    registration = Registration(OCPP16, True)
    registration.answered({"status": "Maybe"})
    registration.answered([])
    assert registration.status is None
    assert registration.refusal("Heartbeat") is None
