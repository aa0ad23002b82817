"""The query of GET /api/v1/chargepoints/{id}/messages: each filter read, each bad one named."""

from __future__ import annotations

import pytest

from ocppgw.admin.history import Filters
from ocppgw.admin.messages import filters
from ocppgw.admin.routes import HTTPError


def test_defaults() -> None:
    """No query: the newest 100 records, nothing filtered."""
    assert filters({}) == Filters()


def test_every_filter() -> None:
    """Each parameter fills its filter; times are RFC 3339 with their offset, in ms."""
    chosen = filters(
        {
            "limit": "5",
            "since": "2026-12-06T14:02:03.123Z",
            "until": "2026-12-06T15:02:03+01:00",
            "action": "Authorize",
            "direction": "ToBackend",
            "unique_id": "42",
            "type": "3",
            "follow": "true",
        }
    )
    assert chosen == Filters(5, 1796565723123, 1796565723000, "Authorize", "ToBackend", "42", 3)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"limit": "0"}, "limit: a whole number from 1 to 10000, not '0'"),
        ({"since": "yesterday"}, "since: not an RFC 3339 time: 'yesterday'"),
        ({"until": "2026-12-06T14:02:03"}, "until: an RFC 3339 time needs its offset"),
        ({"type": "7"}, "type: a MessageTypeId from 2 to 6, not '7'"),
        ({"colour": "red"}, "colour: no such parameter; known: limit, since"),
    ],
)
def test_bad_query(query: dict[str, str], error: str) -> None:
    """A bad parameter is a 400 naming it and what it must be."""
    with pytest.raises(HTTPError) as raised:
        filters(query)
    assert raised.value.status == 400
    assert raised.value.body["error"].startswith(error)
