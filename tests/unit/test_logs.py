"""The log observers: JSON lines, and repeated warnings held back."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import (
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    formatEvent,
    formatTime,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ocppgw.logs import BURST, WINDOW, JSONLines, RateLimited, Timestamps, event_text, observer_for


def event(fmt: str, level: LogLevel = LogLevel.warn, **kw: Any) -> dict[str, Any]:
    return {"log_format": fmt, "log_level": level, "log_namespace": "t", "log_time": 0.0, **kw}


class LogTests(SynchronousTestCase):
    def test_json_lines(self) -> None:
        """Each event is one JSON object on one line, with identity and peer when given."""
        out = io.StringIO()
        observer = JSONLines(out)
        observer(event("{cid}: connected from {peer}", LogLevel.info, cid="CP1", peer="tcp4:x"))
        observer(event("plain\nline two"))
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual(first["text"], "CP1: connected from tcp4:x")
        self.assertEqual(
            (first["identity"], first["peer"], first["level"]), ("CP1", "tcp4:x", "info")
        )
        self.assertEqual(json.loads(lines[1])["text"], "plain\nline two")

    def test_json_lines_name_the_worker(self) -> None:
        """An event a worker logged (field "worker") keeps its index as the field "worker"."""
        out = io.StringIO()
        observer = JSONLines(out)
        observer(event("MQTT connected", LogLevel.info, worker=1))
        observer(event("the supervisor's own", LogLevel.info))
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        self.assertEqual((first["worker"], first["text"]), (1, "MQTT connected"))
        self.assertNotIn("worker", second)

    def test_repeated_warnings_held_back(self) -> None:
        """Past BURST in a window a warning is held back; the next window says how many."""
        seen: list[dict[str, Any]] = []
        now = [0.0]
        limited = RateLimited(seen.append, clock=lambda: now[0])
        for _ in range(BURST + 5):
            limited(event("{cid}: bad frame", cid="CP1"))
        limited(event("{cid}: bad frame", cid="CP2"))
        limited(event("not a warning", LogLevel.info))
        self.assertEqual(len(seen), BURST + 2)
        now[0] = WINDOW
        limited(event("{cid}: bad frame", cid="CP1"))
        self.assertEqual(seen[-2]["held"], 5)
        self.assertEqual(seen[-1]["log_format"], "{cid}: bad frame")


class _Thing:
    name = "a {thing}"

    def describe(self) -> str:
        return "described"

    def __repr__(self) -> str:
        return "<Thing {}>"


def _failure() -> Failure:
    try:
        raise ValueError("broken {cid}")
    except ValueError:
        return Failure()


#: Events whose text the fast path makes, and those it leaves to Twisted.
EVENTS = [
    event("{cid}: connected ({v}) from {peer}", LogLevel.info, cid="CP1", v="1.6", peer="x"),
    event("braces in values: {a} {b!r}", a="{x}", b="}{"),
    event("attribute {t.name}, spec {n:>6.2f}, index {l[1]}", t=_Thing(), n=3.14159, l=[1, 2]),
    event("a call {t.describe()} and {f()}", t=_Thing(), f=lambda: "called"),
    event("a missing {field}"),
    event("positional {0}"),
    event("literal {{braces}} and a conversion {t!r}", t=_Thing()),
    event("multi\nline {cid}", cid="CP2"),
    event("with a failure {cid}", cid="CP3", log_failure=_failure()),
    event("a system of its own", log_system="worker#1"),
    {"log_format": None, "log_level": LogLevel.info, "log_namespace": "t", "log_time": 0.0},
    {"log_level": LogLevel.info, "log_namespace": "t", "log_time": None, "message": ("legacy",)},
    event(b"bytes format {cid}", cid="CP4"),  # type: ignore[arg-type]
    event("", LogLevel.info),
]


def _flattened(original: dict[str, Any]) -> dict[str, Any]:
    """The event as a worker relays it: through JSON, its fields flattened."""
    return eventFromJSON(eventAsJSON(original))


@pytest.mark.parametrize("original", EVENTS + [_flattened(e) for e in EVENTS[:4]])
def test_text_is_twisteds(original: dict[str, Any]) -> None:
    """The fast text of an event, and its classic line, are exactly Twisted's."""
    assert event_text(dict(original)) == formatEvent(dict(original))
    theirs, ours = io.StringIO(), io.StringIO()
    textFileLogObserver(theirs)(dict(original))
    observer_for("text", ours)(dict(original))
    assert ours.getvalue() == theirs.getvalue()


@given(
    st.text(alphabet="ab{}!:.[]()0 ", max_size=12),
    st.dictionaries(st.sampled_from(["a", "b", "cid"]), st.text(max_size=6)),
    st.floats(min_value=-4e9, max_value=4e9),
)
def test_any_format_and_time_is_twisteds(fmt: str, fields: dict[str, str], when: float) -> None:
    """Any format string, field values and time: the classic line is exactly Twisted's."""
    original = {**event(fmt, LogLevel.info, **fields), "log_time": when}
    theirs, ours = io.StringIO(), io.StringIO()
    textFileLogObserver(theirs)(dict(original))
    observer_for("text", ours)(dict(original))
    assert ours.getvalue() == theirs.getvalue()


def test_time_stamps_change_with_the_second() -> None:
    """
    The cached time stamp is the second's: the next second has its own, and a
    time within half a microsecond of the next second is in it, as datetime
    rounds it.
    """
    stamps = Timestamps()
    assert stamps(100.2) == stamps(100.9) == formatTime(100, timeFormatRFC3339)
    assert stamps(101.0) == formatTime(101, timeFormatRFC3339)
    assert stamps(1.9999995231628418) == formatTime(2, timeFormatRFC3339)
    assert stamps(-0.5) == formatTime(-0.5, timeFormatRFC3339)
    assert stamps(None) == "-"
