# -*- test-case-name: tests.unit.admin.test_flight -*-
"""
``[recorder] redact``: the string values of named payload fields replaced by
a keyed hash before the flight recorder stores a frame (issue 21).

A field is named by its key (``idTag``: that key at any depth) or by a dotted
path whose last part is the key and whose earlier parts are the keys of the
objects around it (``idToken.idToken``: the ``idToken`` member of an object
that is the value of an ``idToken`` key).  The hash is HMAC-SHA256 under a
key drawn at start, so the same value gives the same hash within one run and
no hash can be looked up across runs.  Only the quoted value is replaced;
the rest of the text stays as it was.  What is relayed is never touched: the
recorder redacts its own copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable
from typing import Any

#: Characters of the hash kept: 64 bits, enough to tell values apart.
HASH_CHARS = 16
#: A JSON string, escapes included.
_STRING = r'"((?:[^"\\]|\\.)*)"'


class Redactor:
    """Replaces the values of the named fields in a frame's text."""

    def __init__(self, fields: Iterable[str], key: bytes | None = None) -> None:
        self.paths = tuple(tuple(f.split(".")) for f in fields)
        self._key = key if key is not None else os.urandom(32)
        last = sorted({path[-1] for path in self.paths})
        #: The keys: a frame holding none of them is stored as it is.
        self._needles = tuple(last)
        #: What all keys begin with ("idT" for idTag and idToken): one search
        #: tells most frames apart, instead of one per key.
        self._prefix = _common_start(last)
        self._pattern = (
            re.compile("(" + "|".join(re.escape(f'"{n}"') for n in last) + r")(\s*:\s*)" + _STRING)
            if last
            else None
        )
        self._plain = {path[-1] for path in self.paths if len(path) == 1}
        #: The same keys inside a JSON string (a frame carried in an
        #: envelope's field): every value replaced, whatever the path.
        self._escaped = (
            re.compile(
                "("
                + "|".join(re.escape('\\"' + n + '\\"') for n in last)
                + r")(\s*:\s*)\\\"((?:(?!\\\").)*)\\\""
            )
            if last
            else None
        )

    def hash(self, value: str) -> str:
        """The stand-in of ``value``: ``h:`` and hex digits of its keyed hash."""
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return "h:" + digest[:HASH_CHARS]

    def __call__(self, text: str) -> str:
        """``text`` with the named fields' string values replaced."""
        pattern = self._pattern
        if pattern is None or self._prefix not in text:
            return text
        for needle in self._needles:
            if needle in text:
                break
        else:
            return text
        #: The values at the dotted paths, parsed once, only if a key needs them.
        nested: list[set[str] | None] = []

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)[1:-1]
            try:
                value = json.loads('"' + match.group(3) + '"')
            except ValueError:
                value = match.group(3)
            if name not in self._plain:
                if not nested:
                    nested.append(self._nested_values(text))
                if nested[0] is not None and value not in nested[0]:
                    return match.group(0)
            return f'{match.group(1)}{match.group(2)}"{self.hash(value)}"'

        text = pattern.sub(replace, text)
        if self._escaped is not None and '\\"' in text:
            text = self._escaped.sub(
                lambda m: f'{m.group(1)}{m.group(2)}\\"{self.hash(m.group(3))}\\"', text
            )
        return text

    def _nested_values(self, text: str) -> set[str] | None:
        """
        The string values at the dotted paths; None when the text is not JSON
        (then every value of a named key is replaced, to be safe).  A value
        equal to one of these under the same key elsewhere is replaced too:
        it is the same personal value.
        """
        nested = [path for path in self.paths if len(path) > 1]
        if not nested:
            return set()
        try:
            document = json.loads(text)
        except ValueError:
            return None
        found: set[str] = set()
        _collect(document, (), nested, found)
        return found


def _common_start(words: list[str]) -> str:
    """The longest text every word begins with ("" for none)."""
    if not words:
        return ""
    low, high = min(words), max(words)  # the others share what these two share
    n = 0
    while n < len(low) and low[n] == high[n]:
        n += 1
    return low[:n]


def _collect(node: Any, keys: tuple[str, ...], paths: list[tuple[str, ...]], out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*keys[-8:], key)
            if isinstance(value, str):
                for path in paths:
                    if here[-len(path) :] == path:
                        out.add(value)
            else:
                _collect(value, here, paths, out)
    elif isinstance(node, list):
        for value in node:
            _collect(value, keys, paths, out)
