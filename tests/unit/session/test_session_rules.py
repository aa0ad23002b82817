# -*- test-case-name: tests.unit.session.test_session_rules -*-
"""Session rules that need the validator or the configuration: issue 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from ocppgw.assemble import session_options
from ocppgw.config import ConfigError, parse
from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import Call, CallError, CallResult
from ocppgw.ocpp.validation import Validator
from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201
from ocppgw.session.rules import Session, SessionOptions
from tests.clocks import Clocks, SessionsTestCase, end_session, made
from tests.fakes import FakeConnection, FakeRouter

VALIDATE = Validator().validate
NOW = "2026-01-01T00:00:00Z"
BOOT16 = '[2,"1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


def make(version: str, **options: object) -> tuple[Session, FakeConnection, FakeRouter, Clock]:
    connection, router, clock = FakeConnection(), FakeRouter(), Clock()
    opts = SessionOptions(validate_upstream=VALIDATE, validate_downstream=VALIDATE, **options)  # type: ignore[arg-type]
    session = made(Session("CP1", version, connection, router, clock, opts), clock)
    return session, connection, router, clock


class UpstreamValidationTests(SessionsTestCase):
    def test_valid_call_published(self) -> None:
        """A schema-valid CALL is published, nothing sent back yet."""
        session, connection, router, _ = make(OCPP16)
        session.frame_received(BOOT16)
        self.assertEqual(len(router.envelopes), 1)
        self.assertEqual(connection.frames, [])

    def test_missing_field_per_version(self) -> None:
        """A missing required field gets the version's occurrence code and names the field."""
        for version, code, frame in [
            (
                OCPP16,
                "OccurenceConstraintViolation",
                '[2,"1","BootNotification",{"chargePointVendor":"V"}]',
            ),
            (
                OCPP201,
                "OccurrenceConstraintViolation",
                '[2,"1","BootNotification",{"reason":"PowerUp"}]',
            ),
        ]:
            session, connection, router, _ = make(version)
            session.frame_received(frame)
            (sent,) = connection.sent()
            self.assertEqual(sent[:3], [4, "1", code])
            self.assertIn("chargePointModel" if version == OCPP16 else "chargingStation", sent[3])
            self.assertEqual(router.envelopes, [])
            self.assertEqual(router.invalid, [frame])

    def test_type_and_property_violations(self) -> None:
        """Wrong type and too-long string map to their OCPP-J codes."""
        session, connection, _, _ = make(OCPP16)
        session.frame_received(
            '[2,"1","BootNotification",{"chargePointVendor":5,"chargePointModel":"M"}]'
        )
        session.frame_received(
            '[2,"2","BootNotification",'
            '{"chargePointVendor":"' + "V" * 21 + '","chargePointModel":"M"}]'
        )
        codes = [f[2] for f in connection.sent()]
        self.assertEqual(codes, ["TypeConstraintViolation", "PropertyConstraintViolation"])

    def test_unknown_action(self) -> None:
        """An action the version does not have gets NotImplemented."""
        session, connection, router, _ = make(OCPP201)
        session.frame_received('[2,"1","StartTransaction",{}]')
        self.assertEqual(connection.sent()[0][:3], [4, "1", "NotImplemented"])
        self.assertEqual(router.envelopes, [])

    def test_invalid_callresult_reported_to_backend(self) -> None:
        """An invalid CALLRESULT from the CP becomes a ValidationFailed envelope for that call."""
        session, connection, router, _ = make(OCPP201)
        session.envelope_received(Envelope(Call("d1", "Reset", {"type": "Immediate"})))
        session.frame_received('[3,"d1",{"status":"Maybe"}]')
        err = router.envelopes[-1].message
        assert isinstance(err, CallError)
        self.assertEqual(
            (err.unique_id, err.error_code, err.action), ("d1", "ValidationFailed", "Reset")
        )
        self.assertEqual(err.error_details, {"Payload": {"status": "Maybe"}})
        self.assertEqual(len(connection.frames), 1)  # no CALLRESULTERROR before 2.1

    def test_invalid_callresult_21_gets_callresulterror(self) -> None:
        """2.1: the charge point also gets CALLRESULTERROR for its invalid CALLRESULT."""
        session, connection, _, _ = make(OCPP21)
        session.envelope_received(Envelope(Call("d1", "Reset", {"type": "Immediate"})))
        session.frame_received('[3,"d1",{"status":"Maybe"}]')
        self.assertEqual(connection.sent()[-1][:3], [5, "d1", "PropertyConstraintViolation"])


class DownstreamValidationTests(SessionsTestCase):
    def test_invalid_downstream_call_not_sent(self) -> None:
        """A backend CALL with an invalid payload never reaches the CP; Invalid envelope."""
        session, connection, router, _ = make(OCPP16)
        session.envelope_received(Envelope(Call("d1", "Reset", {"type": "Sideways"})))
        self.assertEqual(connection.frames, [])
        err = router.envelopes[-1].message
        assert isinstance(err, CallError)
        self.assertEqual((err.error_code, err.action), ("Invalid", "Reset"))
        self.assertIn("type", err.error_description)

    def test_invalid_downstream_result_keeps_call_pending(self) -> None:
        """An invalid backend CALLRESULT is refused; a valid one after it still answers."""
        session, connection, router, _ = make(OCPP16)
        session.frame_received(BOOT16)
        session.envelope_received(Envelope(CallResult("1", {"status": "Accepted"})))
        self.assertEqual(connection.frames, [])
        self.assertEqual(router.envelopes[-1].message.error_code, "Invalid")  # type: ignore[union-attr]
        good = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}
        session.envelope_received(Envelope(CallResult("1", good)))
        self.assertEqual(connection.sent(), [[3, "1", good]])


class LocalHeartbeatTests(SessionsTestCase):
    def test_answered_locally_and_published(self) -> None:
        """[local] heartbeat answers with currentTime and still publishes, marked answered."""
        session, connection, router, clock = make(OCPP16, local_heartbeat=True)
        clock.advance(1_700_000_000.25)
        session.frame_received('[2,"h1","Heartbeat",{}]')
        now = "2023-11-14T22:13:20.250Z"
        self.assertEqual(connection.sent(), [[3, "h1", {"currentTime": now}]])
        (env,) = router.envelopes
        self.assertTrue(env.answered)
        self.assertEqual(clock.getDelayedCalls(), [])


#: A valid StatusNotification per version.
STATUS = {
    OCPP16: {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    OCPP201: {
        "timestamp": "2026-01-01T00:00:00Z",
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    },
    OCPP21: {
        "timestamp": "2026-01-01T00:00:00Z",
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    },
}


class LocalStatusNotificationTests(SessionsTestCase):
    def test_answered_locally_and_published_in_every_version(self) -> None:
        """[local] status_notification answers {} in 1.6, 2.0.1, 2.1 and publishes it, answered."""
        for version, payload in STATUS.items():
            session, connection, router, clock = make(version, local_status_notification=True)
            session.frame_received(json.dumps([2, "s1", "StatusNotification", payload]))
            self.assertEqual(connection.sent(), [[3, "s1", {}]])
            (env,) = router.envelopes
            self.assertTrue(env.answered)
            self.assertEqual(env.message, Call("s1", "StatusNotification", payload))
            self.assertEqual(clock.getDelayedCalls(), [])

    def test_backend_answer_to_local_call_is_unmatched(self) -> None:
        """An answer the backend sends anyway to a locally answered CALL is Unmatched, not sent."""
        session, connection, router, _ = make(OCPP16, local_status_notification=True)
        session.frame_received(json.dumps([2, "s1", "StatusNotification", STATUS[OCPP16]]))
        connection.frames.clear()
        session.envelope_received(Envelope(CallResult("s1", {})))
        self.assertEqual(connection.frames, [])
        self.assertEqual(router.envelopes[-1].message.error_code, "Unmatched")  # type: ignore[union-attr]

    def test_off_by_default_relays_and_waits(self) -> None:
        """Without the key a StatusNotification waits for the backend's answer (timer running)."""
        session, connection, router, clock = make(OCPP16)
        session.frame_received(json.dumps([2, "s1", "StatusNotification", STATUS[OCPP16]]))
        self.assertEqual(connection.frames, [])
        (env,) = router.envelopes
        self.assertFalse(env.answered)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        session.envelope_received(Envelope(CallResult("s1", {})))
        self.assertEqual(connection.sent(), [[3, "s1", {}]])

    def test_only_status_notification_is_local(self) -> None:
        """status_notification alone leaves Heartbeat to the backend, and heartbeat alone
        leaves StatusNotification to it."""
        session, connection, router, _ = make(OCPP16, local_status_notification=True)
        session.frame_received('[2,"h1","Heartbeat",{}]')
        self.assertEqual(connection.frames, [])
        self.assertFalse(router.envelopes[-1].answered)
        session.envelope_received(Envelope(CallResult("h1", {"currentTime": NOW})))
        session, connection, router, _ = make(OCPP16, local_heartbeat=True)
        session.frame_received(json.dumps([2, "s1", "StatusNotification", STATUS[OCPP16]]))
        self.assertEqual(connection.frames, [])
        self.assertFalse(router.envelopes[-1].answered)
        session.envelope_received(Envelope(CallResult("s1", {})))


class OptionsTests(SessionsTestCase):
    def test_config_to_options(self) -> None:
        """The INI keys of issue 3 reach the session options."""
        config = parse(
            "[listener:a]\nendpoint = tcp:1\n"
            "[gateway]\nstrict = false\n"
            "[upstream]\nawaiting_timeout = 5\n"
            "[dnstream]\nawaiting_timeout = 7\nmax_queue = 3\n"
            "[validation]\nmode = upstream\n"
            "[local]\nheartbeat = yes\nstatus_notification = true\n"
        )
        options = session_options(config)
        self.assertEqual(
            (
                options.strict,
                options.upstream_timeout,
                options.downstream_timeout,
                options.max_queue,
                options.local_heartbeat,
                options.local_status_notification,
            ),
            (False, 5.0, 7.0, 3, True, True),
        )
        self.assertIsNotNone(options.validate_upstream)
        self.assertIsNone(options.validate_downstream)

    def test_offline_ttl_reaches_options(self) -> None:
        """[dnstream] offline_ttl is the session's grace period."""
        options = session_options(
            parse("[listener:a]\nendpoint = tcp:1\n[dnstream]\noffline_ttl = 9\n")
        )
        self.assertEqual(options.offline_ttl, 9.0)

    def test_validation_off(self) -> None:
        """mode = off disables validation both ways."""
        options = session_options(
            parse("[listener:a]\nendpoint = tcp:1\n[validation]\nmode = off\n")
        )
        self.assertIsNone(options.validate_upstream)
        self.assertIsNone(options.validate_downstream)


def _schema_dir(tmp_path: Path, schema: object) -> str:
    (tmp_path / "v16").mkdir()
    (tmp_path / "v16" / "Heartbeat.json").write_text(json.dumps(schema))
    (tmp_path / "v16" / "HeartbeatResponse.json").write_text("{}")
    return str(tmp_path)


def test_broken_schema_dir_stops_the_start(tmp_path: Path) -> None:
    """A schema_dir holding an invalid schema is a configuration error naming it."""
    directory = _schema_dir(tmp_path, {"type": "object", "required": "x"})
    config = parse(f"[listener:a]\nendpoint = tcp:1\n[validation]\nschema_dir = {directory}\n")
    with pytest.raises(ConfigError, match=r"\[validation\] schema_dir: .*Heartbeat\.json"):
        session_options(config)


def test_schema_failing_at_runtime_answers_internal_error(tmp_path: Path, clocks: Clocks) -> None:
    """A $ref that cannot be resolved gets InternalError for the CALL, not a crash."""
    directory = _schema_dir(
        tmp_path, {"properties": {"n": {"$ref": "http://example.invalid/N.json"}}}
    )
    config = parse(f"[listener:a]\nendpoint = tcp:1\n[validation]\nschema_dir = {directory}\n")
    options = session_options(config)
    connection, router = FakeConnection(), FakeRouter()
    session = Session("CP1", OCPP16, connection, router, clocks.new(), options)
    session.frame_received('[2,"1","Heartbeat",{"n":1}]')
    assert connection.sent()[0][:3] == [4, "1", "InternalError"]
    assert router.envelopes == []
    end_session(session)


def test_configured_check_answers_alike_before_and_after_its_schema_is_compiled() -> None:
    """
    The configured check gives the same answer to a payload the first time
    (the schema compiled then) and every time after (the compiled fast path),
    valid or not, and counts each refusal.
    """
    from ocppgw.interfaces import NO_EVENTS

    refused: list[tuple[str, bool]] = []

    class Events(type(NO_EVENTS)):  # type: ignore[misc]
        def validation_failed(self, action: str, upstream: bool) -> None:
            refused.append((action, upstream))

    options = session_options(
        parse("[listener:a]\nendpoint = tcp:1\n[validation]\nmode = all\n"), Events()
    )
    check = options.validate_upstream
    assert check is not None
    good = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    bad = {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}
    answers = [check("ocpp1.6", "StatusNotification", True, p) for p in (good, bad, good, bad)]
    assert answers[0] is None and answers[2] is None
    assert answers[1] is not None and answers[3] is not None
    assert answers[1].description == answers[3].description
    assert "Sleeping" in answers[1].description
    assert refused == [("StatusNotification", True)] * 2
