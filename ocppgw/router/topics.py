# -*- test-case-name: tests.unit.router.test_topics,tests.unit.router.test_shard -*-
"""
Topic templates: ``ocpp/cp/${cid}/${action}`` and friends.

Placeholders: ``${cid}`` (charge point identity), ``${action}``, ``${type}``
(MessageTypeId), ``${id}`` (UniqueId), ``${version}`` (subprotocol),
``${gateway}`` (the gateway's id) and ``${shard}`` (:func:`shard`: a stable
hash of the identity modulo ``[upstream] shards``, so that backend worker k
can subscribe to its shard and see each of its charge points in order).
Upstream templates render to the topic a message is published on, and may
not contain MQTT wildcards.  The downstream
template renders to one subscription per charge point: it must contain
``${cid}``; ``${action}``, ``${type}`` and ``${id}`` become ``+`` there, since
the message is not known yet.

A value is never allowed to change the shape of a topic: ``/``, ``+``, ``#``,
``%`` and NUL in a value are percent-encoded (``a/b`` -> ``a%2Fb``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

PLACEHOLDERS = frozenset({"cid", "action", "type", "id", "version", "gateway", "shard"})
#: Placeholders whose value is only known once a message is there.
PER_MESSAGE = frozenset({"action", "type", "id"})

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_UNSAFE = re.compile(r"[/+#%\x00]")


def shard(identity: str, shards: int) -> str:
    """
    ``identity``'s shard, ``0`` to ``shards - 1``: CRC-32 of its UTF-8 bytes
    modulo ``shards``.  The same on every instance, in every process and
    Python version (unlike ``hash()``), so every instance sends a charge
    point's messages to the same shard.
    """
    return str(zlib.crc32(identity.encode("utf-8")) % shards)


class TemplateError(ValueError):
    """A topic template that cannot be used; the text says why."""


def _percent(m: re.Match[str]) -> str:
    return f"%{ord(m.group()):02X}"


@lru_cache(maxsize=4096)
def escape(value: str) -> str:
    """``value`` made safe as (part of) one topic level."""
    # Cached: the same identities and actions are rendered for every message.
    return _UNSAFE.sub(_percent, value)


_ESCAPED = re.compile(r"%(2F|2B|23|25|00)")


def unescape(value: str) -> str:
    """The inverse of :func:`escape`."""
    if "%" not in value:
        return value
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value)


def _level_pattern(level: str) -> str:
    out = []
    pos = 0
    for m in _PLACEHOLDER.finditer(level):
        out.append(re.escape(level[pos : m.start()]))
        out.append(
            "(?P<cid>[^/]+)" if m.group(1) == "cid" and "(?P<cid>" not in "".join(out) else "[^/]*"
        )
        pos = m.end()
    out.append(re.escape(level[pos:]))
    return "".join(out)


def _matcher(text: str, literal: Callable[[str], str] = _level_pattern) -> re.Pattern[str]:
    """A pattern of the topics ``text`` matches; ``literal`` makes a level's pattern."""
    parts: list[str] = []
    levels = text.split("/")
    for i, level in enumerate(levels):
        sep = "/" if i else ""
        if level == "#":
            # "a/#" matches "a" too (MQTT 3.1.1 §4.7.1.2).
            parts.append(f"(?:{sep}.*)?" if i else ".*")
        elif level == "+":
            parts.append(sep + "[^/]*")
        else:
            parts.append(sep + literal(level))
    # DOTALL: a topic may hold any character but NUL, a newline too.
    return re.compile("".join(parts), re.DOTALL)


#: Topic names a :class:`TopicNames` (or a template's identities) remembers;
#: past it, it starts again.
TOPIC_NAMES = 4096

_UNSEEN = object()


def _parts(text: str) -> tuple[tuple[str, str | None], ...]:
    """``text`` as (literal, placeholder name or None) pairs, in order."""
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append((text[pos : m.start()], m.group(1)))
        pos = m.end()
    parts.append((text[pos:], None))
    return tuple(parts)


@dataclass(frozen=True)
class TopicTemplate:
    text: str
    downstream: bool
    _matcher: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    #: ``text`` split once at its placeholders, for :meth:`render`.
    _parts: tuple[tuple[str, str | None], ...] = field(
        init=False, default=(), compare=False, repr=False
    )

    _per_id: bool = field(init=False, default=False, compare=False, repr=False)
    #: Downstream topics seen, and the identity each is for (a message and
    #: its catch-all copy ask the same; at most :data:`TOPIC_NAMES`).
    _identities: dict[str, str | None] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parts", _parts(self.text))
        object.__setattr__(self, "_per_id", any(name == "id" for _, name in self._parts))

    @classmethod
    def parse(cls, text: str, *, downstream: bool = False) -> TopicTemplate:
        """
        Check ``text`` as an upstream (publish) or downstream (subscribe) template.

        :raises TemplateError: naming the problem.
        """
        if not text:
            raise TemplateError("topic must not be empty")
        if "\x00" in text:
            raise TemplateError("topic must not contain NUL")
        stripped = _PLACEHOLDER.sub("", text)
        if "$" in stripped.replace("$SYS", "") or "{" in stripped or "}" in stripped:
            raise TemplateError(f"malformed placeholder in {text!r}; write ${{name}}")
        for name in _PLACEHOLDER.findall(text):
            if name not in PLACEHOLDERS:
                raise TemplateError(
                    f"unknown placeholder ${{{name}}}; known: "
                    + ", ".join(f"${{{p}}}" for p in sorted(PLACEHOLDERS))
                )
        levels = text.split("/")
        if downstream:
            if "${cid}" not in text:
                raise TemplateError("downstream topic must contain ${cid}")
            for i, level in enumerate(levels):
                if ("+" in level and level != "+") or ("#" in level and level != "#"):
                    raise TemplateError("a wildcard must fill a whole topic level")
                if level == "#" and i != len(levels) - 1:
                    raise TemplateError("# may only be the last topic level")
            if len(levels) > 1 and levels[0] == "" and text.startswith("#"):
                raise TemplateError("bad topic")
        elif "+" in text or "#" in text:
            raise TemplateError("a publish topic must not contain the wildcards + or #")
        return cls(text, downstream, _matcher(text) if downstream else None)

    def charge_point_of(self, topic: str) -> str | None:
        """
        The identity that a topic matching this downstream template is for.

        The caller still checks the topic against that identity's subscription
        (``${cid}`` may stand beside other text in a level).
        """
        assert self._matcher is not None, "only downstream templates match topics"
        known = self._identities.get(topic, _UNSEEN)
        if known is not _UNSEEN:
            return known  # type: ignore[return-value]
        m = self._matcher.fullmatch(topic)
        identity = unescape(m.group("cid")) if m else None
        if len(self._identities) >= TOPIC_NAMES:
            self._identities.clear()  # bounded: topics seen start again
        self._identities[topic] = identity
        return identity

    @property
    def per_message_id(self) -> bool:
        """The template holds ``${id}``: each message has a topic of its own."""
        return self._per_id

    def render(self, values: Mapping[str, str]) -> str:
        """The topic with every placeholder replaced by its (escaped) value."""
        out = []
        for literal, name in self._parts:
            out.append(literal)
            if name is not None:
                out.append(escape(values.get(name, "")))
        return "".join(out)

    def subscription(self, values: Mapping[str, str], *, any_cid: bool = False) -> str:
        """
        The subscription filter of a downstream template for one charge point
        (for every charge point with ``any_cid``).

        A level that holds a per-message placeholder becomes ``+``.
        """
        wild = PER_MESSAGE | {"cid", "shard"} if any_cid else PER_MESSAGE
        levels = []
        for level in self.text.split("/"):
            names = set(_PLACEHOLDER.findall(level))
            if names & wild:
                levels.append("+")
            else:
                levels.append(_PLACEHOLDER.sub(lambda m: escape(values.get(m.group(1), "")), level))
        return "/".join(levels)


class TopicNames:
    """
    The topics upstream templates render to, remembered: by template,
    identity, version, Action and MessageTypeId (at most :data:`TOPIC_NAMES`
    of them), except for a template holding ``${id}``.

    :param values: the placeholders' values for (identity, version, message).
    """

    def __init__(self, values: Callable[[str, str | None, Any], Mapping[str, str]]) -> None:
        self._values = values
        self._names: dict[tuple[object, ...], str] = {}

    def name(self, template: TopicTemplate, cid: str, version: str | None, message: Any) -> str:
        """The topic ``template`` renders to for ``message`` of charge point ``cid``."""
        if template.per_message_id:
            return template.render(self._values(cid, version, message))
        key = (template.text, cid, version, message.action, message.message_type)
        name = self._names.get(key)
        if name is None:
            if len(self._names) >= TOPIC_NAMES:
                self._names.clear()
            name = self._names[key] = template.render(self._values(cid, version, message))
        return name


def compile_filter(subscription: str) -> Callable[[str], bool]:
    """
    :func:`topic_matches` for one fixed ``subscription``, compiled once: for
    the filters every message is checked against.
    """
    pattern = _matcher(subscription, re.escape)
    wild_first = subscription.split("/", 1)[0] in ("+", "#")

    def matches(topic: str) -> bool:
        if wild_first and topic.startswith("$"):
            return False  # §4.7.2: wildcards at the start do not match $ topics
        return pattern.fullmatch(topic) is not None

    return matches


def topic_matches(subscription: str, topic: str) -> bool:
    """True when ``topic`` matches the MQTT filter ``subscription`` (MQTT 3.1.1 §4.7)."""
    if subscription[-2:] == "/#":
        # The usual per-charge point filter, "<levels>/#" with no other
        # wildcard: its levels and everything under them (§4.7.1.2: "a/#"
        # matches "a" too). Its first level is no wildcard, so the rule for
        # topics starting with $ (§4.7.2) cannot apply.
        stem = subscription[:-1]
        if "+" not in stem and "#" not in stem:
            return topic.startswith(stem) or topic == stem[:-1]
    sub_levels = subscription.split("/")
    top_levels = topic.split("/")
    if topic.startswith("$") and sub_levels[0] in ("+", "#"):
        return False
    for i, s in enumerate(sub_levels):
        if s == "#":
            return True
        if i >= len(top_levels):
            return False
        if s != "+" and s != top_levels[i]:
            return False
    return len(sub_levels) == len(top_levels)


def topic_values(gateway: str, identity: str, version: str | None) -> dict[str, str]:
    """The values of a topic template for one charge point (or none: ``identity=""``)."""
    return {"cid": identity, "gateway": gateway, "version": version or ""}
