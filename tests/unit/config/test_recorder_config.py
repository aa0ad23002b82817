"""The [recorder] section: the flight recorder's bounds and redaction (issue 21)."""

from __future__ import annotations

import pytest

from ocppgw.config import ConfigError, parse

BASE = "[listener:ws]\nendpoint = tcp:8080\n"


def test_defaults() -> None:
    """On by default: 200 frames per charge point, 64 MiB, an hour, idTag and idToken redacted."""
    recorder = parse(BASE).recorder
    assert recorder.per_station == 200
    assert recorder.max_memory == 64 * 1024 * 1024
    assert recorder.keep == 3600
    assert recorder.redact == ("idTag", "idToken.idToken")


def test_values() -> None:
    """Sizes take a unit; redact takes names and dotted paths; empty redacts nothing."""
    recorder = parse(
        BASE + "[recorder]\nper_station = 0\nmax_memory = 2KiB\nkeep = 0\nredact =\n"
    ).recorder
    assert (recorder.per_station, recorder.max_memory, recorder.keep) == (0, 2048, 0)
    assert recorder.redact == ()
    assert parse(BASE + "[recorder]\nmax_memory = 1MB\n").recorder.max_memory == 1_000_000


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_memory = 64 furlongs", "[recorder] max_memory: must be a number of bytes"),
        ("per_station = -1", "[recorder] per_station: must be from 0 to 100000"),
        ("redact = idTag a..b", "[recorder] redact: 'a..b' is not a field name"),
        ("keep = -5", "[recorder] keep: must be a non-negative number of seconds"),
    ],
)
def test_bad_values(line: str, message: str) -> None:
    """A bad value stops the gateway with a one-line error naming the key and the problem."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse(BASE + "[recorder]\n" + line + "\n")
