"""validation = observe: the verdict on each relayed frame (ocppgw.forward.verdicts)."""

from __future__ import annotations

from ocppgw.forward.verdicts import ACCEPTED, Verdicts
from ocppgw.ocpp.messages import Call, CallError, CallResult
from ocppgw.ocpp.validation import Validator

VALIDATOR = Validator()


def test_a_valid_call_and_its_answer_are_accepted_and_the_answer_named() -> None:
    """A valid CALL is accepted; its answer from the other side carries the CALL's Action."""
    verdicts = Verdicts("ocpp1.6", VALIDATOR.validate)
    message, verdict = verdicts.judge('[2,"1","Heartbeat",{}]', True)
    assert message == Call("1", "Heartbeat", {}) and verdict == ACCEPTED
    message, verdict = verdicts.judge('[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]', False)
    assert isinstance(message, CallResult) and message.action == "Heartbeat"
    assert verdict == ACCEPTED


def test_a_schema_violation_is_the_refusal_mqtt_mode_would_answer() -> None:
    """A CALL whose payload breaks its schema: the 1.6 error code and a description."""
    verdicts = Verdicts("ocpp1.6", VALIDATOR.validate)
    _, verdict = verdicts.judge('[2,"1","Authorize",{}]', True)
    assert isinstance(verdict, dict)
    assert verdict["ErrorCode"] in ("OccurenceConstraintViolation", "FormationViolation")
    assert "idTag" in verdict["ErrorDescription"]


def test_an_invalid_answer_is_refused_too() -> None:
    """The central system's answer that breaks the response schema gets a refusal verdict."""
    verdicts = Verdicts("ocpp2.0.1", VALIDATOR.validate)
    verdicts.judge('[2,"7","Heartbeat",{}]', True)
    _, verdict = verdicts.judge('[3,"7",{}]', False)
    assert isinstance(verdict, dict) and verdict["ErrorCode"] == "OccurrenceConstraintViolation"


def test_a_frame_that_is_no_message_is_refused_with_no_message() -> None:
    """Not OCPP-J: no message, the verdict of the framing rules (2.0.1: RpcFrameworkError)."""
    message, verdict = Verdicts("ocpp2.0.1", None).judge("not json", True)
    assert message is None
    assert isinstance(verdict, dict) and verdict["ErrorCode"] == "RpcFrameworkError"


def test_without_schema_validation_only_the_framing_counts() -> None:
    """[validation] mode = off: a payload is not checked, so an empty Authorize is accepted."""
    _, verdict = Verdicts("ocpp1.6", None).judge('[2,"1","Authorize",{}]', True)
    assert verdict == ACCEPTED


def test_an_error_answer_is_named_and_accepted() -> None:
    """A CALLERROR answering the charge point's CALL carries that CALL's Action."""
    verdicts = Verdicts("ocpp1.6", None)
    verdicts.judge('[2,"9","DataTransfer",{"vendorId":"x"}]', True)
    message, verdict = verdicts.judge('[4,"9","NotImplemented","",{}]', False)
    assert isinstance(message, CallError) and message.action == "DataTransfer"
    assert verdict == ACCEPTED
