"""The compiled check (jsonschema-rs) and jsonschema agree on every schema."""

from __future__ import annotations

from typing import Any

import jsonschema.exceptions
import pytest
from hypothesis import HealthCheck, given, settings

from ocppgw.ocpp.fastvalidation import compile_fast
from ocppgw.ocpp.schemas import VERSION_DIRS, packaged
from ocppgw.ocpp.validation import Validator, is_multiple_of
from ocppgw.ocpp.versions import OCPP16
from tests.unit.ocpp.strategies import charging_profile, mutated, valid_for

_VALIDATOR = Validator()

_SCHEMAS = [
    (version, action, request)
    for version in VERSION_DIRS
    for action, files in packaged().actions(version).items()
    for request, name in ((True, files[0]), (False, files[1]))
    if name is not None
]


@pytest.mark.parametrize("version, action, request_", _SCHEMAS)
def test_fast_check_agrees_with_jsonschema(version: str, action: str, request_: bool) -> None:
    """For valid and broken payloads of every schema, jsonschema-rs accepts what jsonschema does."""
    reference = _VALIDATOR.compiled(version, action, request_)
    schema = reference.schema
    fast = compile_fast(schema, is_multiple_of)

    @settings(
        max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(mutated(valid_for(schema, schema)))
    def check(payload: Any) -> None:
        expected = jsonschema.exceptions.best_match(reference.iter_errors(payload)) is None
        assert fast(payload) is expected

    check()


@pytest.mark.parametrize(
    "limit, valid", [(8.2, True), (0.30000000000000004, True), (0.35, False), (True, False)]
)
def test_fast_check_tolerant_multiple_of(limit: Any, valid: bool) -> None:
    """The compiled multipleOf 0.1 forgives float artefacts (8.2) and still refuses 0.35."""
    schema = _VALIDATOR.compiled(OCPP16, "SetChargingProfile", True).schema
    payload = charging_profile(limit)
    assert compile_fast(schema, is_multiple_of)(payload) is valid


def test_fast_check_ignores_formats() -> None:
    """A date-time that is not RFC 3339 passes, as in jsonschema without a format checker."""
    schema = _VALIDATOR.compiled(OCPP16, "Heartbeat", False).schema
    assert compile_fast(schema, is_multiple_of)({"currentTime": "yesterday"})


def test_fast_check_never_retrieves() -> None:
    """A $ref to a remote document is refused when compiling, never fetched."""
    with pytest.raises(ValueError, match="not local"):
        compile_fast({"$ref": "http://127.0.0.1:9/schema.json"}, is_multiple_of)


def test_validate_uses_fast_check_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid payload is accepted by the compiled check without walking jsonschema's errors."""
    validator = Validator()
    boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    assert validator.validate(OCPP16, "BootNotification", True, boot) is None

    def walked(errors: Any) -> Any:
        raise AssertionError("jsonschema walked a valid payload")

    monkeypatch.setattr(jsonschema.exceptions, "best_match", walked)
    assert validator.validate(OCPP16, "BootNotification", True, boot) is None
    with pytest.raises(AssertionError, match="walked"):
        validator.validate(OCPP16, "BootNotification", True, {})
