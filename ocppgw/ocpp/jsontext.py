# -*- test-case-name: tests.unit.ocpp.test_messages -*-
"""
Strict JSON text, read and written fast: what frames and envelopes are made of.

:func:`loads` refuses NaN, Infinity and numbers that overflow to infinity
(RFC 8259 §6), and unpaired surrogates, escaped (``"\\ud800"``) or as bytes
(RFC 8259 §8.2, I-JSON RFC 7493 §2.1), which Python's ``json`` accepts;
:func:`dumps` writes compact UTF-8 JSON and refuses non-finite floats.
Otherwise both answer as ``json.loads`` and ``json.dumps`` with those options
do (property tests compare them), with one decoder and one encoder kept for
every call.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from ocppgw.ocpp.jsontext_fast import compact_encoder


class NonFiniteNumber(ValueError):
    """JSON text with NaN, Infinity or a number that overflows to infinity."""


class LoneSurrogate(ValueError):
    """JSON text with an unpaired surrogate: no Unicode text, and no UTF-8 can carry it."""


def _reject_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not valid JSON (RFC 8259 §6)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # RFC 8259 §6: 1e999 is valid syntax, but Python reads it as inf,
        # which no JSON text can carry on.
        raise NonFiniteNumber(f"number {text[:40]} overflows to infinity (RFC 8259 §6)")
    return value


def why_not_json(e: BaseException) -> str:
    """
    Why text is not JSON, in the gateway's own words: what travels in a
    CALLERROR or an error envelope never carries Python's exception text
    (its recursion and digit limits name interpreter settings).
    """
    if isinstance(e, (NonFiniteNumber, LoneSurrogate)):
        return str(e)  # our own text
    if isinstance(e, json.JSONDecodeError):
        return f"not JSON at character {e.pos}"
    if isinstance(e, UnicodeDecodeError):
        return f"byte {e.start} is not UTF-8"
    if isinstance(e, RecursionError):
        return "arrays or objects nest too deeply"
    # The one other ValueError JSON text decodes to: an integer longer than
    # Python converts (sys.set_int_max_str_digits).
    return "a number has too many digits"


#: One decoder for every frame: json.loads with keyword arguments builds a
#: new JSONDecoder each call.
_STRICT = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_SCAN: Callable[[str, int], tuple[Any, int]] = _STRICT.scan_once  # type: ignore[attr-defined]
#: JSON's whitespace (RFC 8259 §2).
_WHITESPACE = " \t\n\r"


def _decode(text: str) -> Any:
    """
    ``_STRICT.decode(text)``, through its scanner when ``text`` is a value
    with at most whitespace after it: ``decode`` matches a regular expression
    on each side of the value first.  Anything else (leading whitespace, an
    error) goes to ``decode``, which says what json.loads says.
    """
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _STRICT.decode(text)
    if end != len(text) and text[end:].strip(_WHITESPACE):
        return _STRICT.decode(text)  # raises: extra data
    return value


#: An escape of a UTF-16 surrogate (RFC 8259 §7): the only way a str that
#: is valid Unicode can decode to an unpaired one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_lone_surrogate(text: str, value: Any) -> Any:
    """
    ``value``, unless ``text`` escapes an unpaired surrogate (RFC 8259 §8.2,
    I-JSON RFC 7493 §2.1: such a string cannot be sent on as UTF-8).  The
    decoded value is only looked at when the text has such an escape: a pair
    decodes to one character, so what does not encode as UTF-8 is lone.
    """
    if _SURROGATE_ESCAPE.search(text) is not None:
        try:
            dumps(value).encode("utf-8")
        except UnicodeEncodeError:
            raise LoneSurrogate(
                "an unpaired surrogate (\\ud800-\\udfff) is not valid JSON text "
                "(RFC 8259 §8.2, I-JSON RFC 7493 §2.1)"
            ) from None
    return value


def loads(text: str | bytes) -> Any:
    """
    Strict JSON: NaN and Infinity, which Python accepts, and numbers that
    overflow to infinity are refused (RFC 8259 §6) with :class:`NonFiniteNumber`;
    an escaped unpaired surrogate with :class:`LoneSurrogate`, and bytes that
    encode one with UnicodeDecodeError (RFC 8259 §8.2).  A ``str`` is taken
    to be valid Unicode (the frames Autobahn validated as UTF-8, text that
    was decoded strictly).
    """
    if isinstance(text, str):
        if text.startswith("\ufeff"):
            # What json.loads says of a text starting with a byte order mark.
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _decode(text)
        # The usual frame has no "\u" at all: one substring search, no regex.
        return value if "\\u" not in text else _no_lone_surrogate(text, value)
    # What json.loads does with bytes: the encoding from the first bytes (RFC
    # 8259 §8.1 asks for UTF-8; json also reads UTF-16 and UTF-32, and drops
    # a UTF-8 byte order mark), then the same decoder.  Bytes that cannot
    # start a byte order mark or a UTF-16/32 text are UTF-8 to
    # json.detect_encoding: said here without calling it.  Decoded strictly,
    # where json passes surrogates through: bytes that encode one are no
    # text (RFC 8259 §8.2).
    if text and text[0] not in _NOT_PLAIN_UTF8 and (len(text) < 2 or text[1]):
        encoding = "utf-8"
    else:
        encoding = json.detect_encoding(text)
    decoded = text.decode(encoding)
    value = _decode(decoded)
    return value if "\\u" not in decoded else _no_lone_surrogate(decoded, value)


#: First bytes that may begin a byte order mark (EF, FE, FF; 00 00 FE FF) or
#: a UTF-16/32 text (a zero byte).
_NOT_PLAIN_UTF8 = frozenset({0x00, 0xEF, 0xFE, 0xFF})


def _public_dumps(value: object) -> str:
    """
    Compact JSON, non-ASCII kept as is (frames and envelopes are UTF-8);
    a non-finite float raises ValueError rather than write ``Infinity``
    (RFC 8259 §6).
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps_with(encoder: Callable[[object, int], list[str]]) -> Callable[[object], str]:
    def dumps(value: object) -> str:
        return "".join(encoder(value, 0))

    dumps.__doc__ = _public_dumps.__doc__
    return dumps


_encoder = compact_encoder()
#: One encoder for every frame and envelope: the speed-up's
#: (:mod:`ocppgw.ocpp.jsontext_fast`), else ``json.dumps``, which writes the same.
dumps: Callable[[object], str] = _public_dumps if _encoder is None else _dumps_with(_encoder)


__all__ = ["LoneSurrogate", "NonFiniteNumber", "dumps", "loads"]
