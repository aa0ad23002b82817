"""OCPP payloads for the tests: examples, and Hypothesis strategies (valid, and broken)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def charging_profile(limit: float, min_rate: float | None = None) -> dict[str, Any]:
    """A 1.6 SetChargingProfile request with one period of ``limit``."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
    }
    if min_rate is not None:
        schedule["minChargingRate"] = min_rate
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": schedule,
        },
    }


def valid_for(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for ``schema`` (local $refs into ``root``; no format checks)."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return valid_for(target, root)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: valid_for(v, root) for k, v in properties.items() if k in required},
            optional={k: valid_for(v, root) for k, v in properties.items() if k not in required},
        )
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(
            valid_for(schema.get("items", {}), root),
            min_size=low,
            max_size=min(schema.get("maxItems", low + 3), low + 3),
        )
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.just("2024-01-01T00:00:00.000Z")
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=max(low, min(schema.get("maxLength", 30), 30)))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", -(10**6)), schema.get("maximum", 10**6)
        if kind == "integer":
            return st.integers(low, high)
        if "multipleOf" in schema:
            step = schema["multipleOf"]
            return st.integers(int(low / step), int(high / step)).map(lambda n: n * step)
        return st.floats(low, high) | st.integers(int(low), int(high))
    if kind == "boolean":
        return st.booleans()
    return st.none()


#: Any JSON value, with the numbers that trip validators: floats that are
#: whole (1.0), binary artefacts of tenths (8.2, 0.30000000000000004), huge ints.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -0.0, 8.2, 0.35, 0.30000000000000004, 1e300, 2**53 + 1])
    | st.text(max_size=600),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``value`` (the root too), as keys and indexes from the root."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """
    A value from ``valid``, often broken in one place: a value replaced by
    any JSON value, a key dropped, an unknown key added, or left as it is.
    """
    value = draw(valid)
    path = draw(st.sampled_from(_paths(value)))
    how = draw(st.sampled_from(["keep", "replace", "drop", "add"]))
    if how == "keep":
        return value
    if how == "replace" and not path:
        return draw(json_values)
    if not path:
        return value
    parent: Any = value
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = draw(json_values)
    elif how == "drop":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    else:
        parent[last] = draw(json_values)
    return value
