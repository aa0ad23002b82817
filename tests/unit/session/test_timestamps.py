"""The envelope timestamp: RFC 3339 UTC with milliseconds, formatted once per second."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ocppgw.session.exchanges import rfc3339


@settings(max_examples=2000, deadline=None, database=None)
@given(
    st.floats(min_value=0, max_value=4e9)
    | st.integers(0, 4 * 10**9).map(lambda n: n - 5e-7)
    | st.integers(0, 4 * 10**9).map(lambda n: n + 0.9995)
)
def test_rfc3339_matches_datetime(seconds: float) -> None:
    """The cached timestamp is exactly what datetime.isoformat gives, to the millisecond."""
    expected = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    assert rfc3339(seconds) == expected.replace("+00:00", "Z")


def test_rfc3339_across_seconds() -> None:
    """Consecutive times in and across seconds each get their own second's text."""
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    assert rfc3339(1_700_000_001.0) == "2023-11-14T22:13:21.000Z"
    assert rfc3339(1_700_000_000.999) == "2023-11-14T22:13:20.999Z"
