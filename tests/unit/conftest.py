"""Fixtures for the unit tests written as plain pytest functions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clocks import Clocks


@pytest.fixture
def clocks() -> Iterator[Clocks]:
    """The test's clocks (``new()``, ``add(reactor)``): none may keep a timer after it."""
    registry = Clocks()
    yield registry
    left = registry.left()
    assert left == [], f"timers left behind by the test: {left}"
