"""Topic templates: rendering, subscriptions and matching."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocppgw.router.topics import (
    PLACEHOLDERS,
    TemplateError,
    TopicTemplate,
    compile_filter,
    escape,
    topic_matches,
    unescape,
)


def test_render_upstream() -> None:
    """Placeholders are replaced by their values."""
    t = TopicTemplate.parse("ocpp/cp/${cid}/${action}/${type}/${id}/${version}/${gateway}")
    values = {
        "cid": "CP1",
        "action": "Heartbeat",
        "type": "2",
        "id": "9",
        "version": "ocpp1.6",
        "gateway": "gw1",
    }
    assert t.render(values) == "ocpp/cp/CP1/Heartbeat/2/9/ocpp1.6/gw1"


def test_values_cannot_change_topic_shape() -> None:
    """/ + # % and NUL in a value are percent-encoded, and decode back."""
    t = TopicTemplate.parse("up/${id}")
    assert t.render({"id": "a/b+c#d%e\x00"}) == "up/a%2Fb%2Bc%23d%25e%00"
    assert unescape(escape("a/b+c#d%e\x00")) == "a/b+c#d%e\x00"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("a/${nope}", "unknown placeholder"),
        ("a/$cid", "malformed placeholder"),
        ("a/+/b", "wildcards"),
        ("a/#", "wildcards"),
    ],
)
def test_bad_upstream_templates(text: str, message: str) -> None:
    """Bad upstream templates are refused with a reason."""
    with pytest.raises(TemplateError, match=message):
        TopicTemplate.parse(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("ocpp/cs/+/+", "must contain"),
        ("ocpp/cs/${cid}/a+", "whole topic level"),
        ("ocpp/#/${cid}", "last topic level"),
    ],
)
def test_bad_downstream_templates(text: str, message: str) -> None:
    """Bad downstream templates are refused with a reason."""
    with pytest.raises(TemplateError, match=message):
        TopicTemplate.parse(text, downstream=True)


def test_subscription_and_match() -> None:
    """Per-message placeholders become +; a topic leads back to its identity."""
    t = TopicTemplate.parse("ocpp/cs/${cid}/${action}/+", downstream=True)
    sub = t.subscription({"cid": "CP 1"})
    assert sub == "ocpp/cs/CP 1/+/+"
    assert t.charge_point_of("ocpp/cs/CP 1/RemoteStartTransaction/x") == "CP 1"
    assert t.charge_point_of("ocpp/cs/CP 1/too/many/levels") is None
    assert t.charge_point_of("other/cs/CP 1/a/b") is None
    assert t.subscription({}, any_cid=True) == "ocpp/cs/+/+/+"


def test_newline_in_a_topic_still_matches() -> None:
    """A topic may hold a newline (any character but NUL): # and + still match it."""
    t = TopicTemplate.parse("cs/${cid}/#", downstream=True)
    assert t.charge_point_of("cs/a/x\ny") == "a"
    assert compile_filter("cs/+/#")("cs/a\nb/x\ny")


def test_match_with_escaped_identity_and_hash() -> None:
    """An identity with % is found through its escaped form; # matches any depth."""
    t = TopicTemplate.parse("cs/${cid}/#", downstream=True)
    sub = t.subscription({"cid": "a%b"})
    assert sub == "cs/a%25b/#"
    assert t.charge_point_of("cs/a%25b/x/y") == "a%b"
    assert t.charge_point_of("cs/a%25b") == "a%b"


@pytest.mark.parametrize(
    "sub, topic, expected",
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/b", "a/b/c", False),
        ("+/x", "$SYS/x", False),
    ],
)
def test_topic_matches(sub: str, topic: str, expected: bool) -> None:
    """MQTT filter matching follows MQTT 3.1.1 §4.7, compiled or not."""
    assert topic_matches(sub, topic) is expected
    assert compile_filter(sub)(topic) is expected


_LEVEL = st.sampled_from(["a", "b", "$SYS", "$x", "", "a.b", "(", "\\n", "x\ny", "+", "#"])


@given(st.lists(_LEVEL, min_size=1, max_size=5), st.lists(_LEVEL, min_size=1, max_size=5))
def test_compiled_filter_agrees(sub_levels: list[str], topic_levels: list[str]) -> None:
    """A compiled filter answers as topic_matches for every filter and topic."""
    # A filter's # is only ever last; a topic holds no wildcards.
    if "#" in sub_levels[:-1]:
        sub_levels = [level for level in sub_levels if level != "#"] or ["a"]
    topic_levels = [level.replace("+", "p").replace("#", "h") for level in topic_levels]
    sub, topic = "/".join(sub_levels), "/".join(topic_levels)
    assert compile_filter(sub)(topic) is topic_matches(sub, topic), (sub, topic)


def _render_by_regex(text: str, values: dict[str, str]) -> str:
    """The template rendered the plain way: each ${name} replaced by its escaped value."""
    return re.sub(r"\$\{([^}]*)\}", lambda m: escape(values.get(m.group(1), "")), text)


_TEXT = st.text(alphabet="ab/%+#-", max_size=4)


@given(
    st.lists(
        st.one_of(
            _TEXT.filter(lambda t: "+" not in t and "#" not in t),
            st.sampled_from(sorted(PLACEHOLDERS)).map(lambda n: f"${{{n}}}"),
        ),
        min_size=1,
        max_size=6,
    ),
    st.dictionaries(st.sampled_from(sorted(PLACEHOLDERS)), _TEXT),
)
def test_render_agrees_with_substitution(pieces: list[str], values: dict[str, str]) -> None:
    """render() gives what replacing each placeholder by its escaped value gives."""
    text = "".join(pieces)
    try:
        template = TopicTemplate.parse(text)
    except TemplateError:
        return
    assert template.render(values) == _render_by_regex(text, values)


def test_charge_point_of_remembers_and_stays_right(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked again, and past the bound of topics remembered, charge_point_of answers the same."""
    from ocppgw.router import topics

    monkeypatch.setattr(topics, "TOPIC_NAMES", 2)
    template = TopicTemplate.parse("ocpp/cs/${cid}/${action}", downstream=True)
    asked = ["ocpp/cs/A/Reset", "ocpp/cs/B%2FC/Reset", "ocpp/other", "ocpp/cs/A/Reset"] * 3
    assert [template.charge_point_of(t) for t in asked] == ["A", "B/C", None, "A"] * 3
    assert len(template._identities) <= 2
