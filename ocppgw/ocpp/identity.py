# -*- test-case-name: tests.unit.listener.test_handshake -*-
"""
The charge point identity: what the last path segment of the WebSocket URL
may hold (OCPP-J 1.6 §3.1.1, 2.0.1 Part 4 §3.1.1, 2.1 Part 4 §3.1.1).

The identity names the charge point's MQTT topics, so it must be one topic
level and must not hold MQTT wildcards; two identities that look the same must
be the same identity.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

#: OCPP 2.0.1 Part 4 §3.1.1 and 2.1 Part 4 §3.1.1: at most 48 characters.
MAX_IDENTITY_LENGTH = 48

#: Unicode categories refused in an identity: controls, format characters
#: (bidi overrides, zero-width joiners), surrogates, private use, unassigned,
#: line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class IdentityError(ValueError):
    """Not usable as a charge point identity; the text says why."""


def identity_from_segment(raw: str) -> str:
    """
    The identity that the percent-encoded path segment ``raw`` names.

    :raises IdentityError: when it is empty, more than one segment, not UTF-8
        once decoded, or breaks :func:`check_identity`.
    """
    if not raw:
        raise IdentityError("charge point identity is empty")
    if "/" in raw:
        raise IdentityError("charge point identity must be one path segment")
    try:
        identity = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityError("charge point identity is not UTF-8 when percent-decoded") from None
    check_identity(identity)
    return identity


def check_identity(identity: str) -> None:
    """
    :raises IdentityError: when ``identity`` cannot be used as one.

    2.x RECOMMENDS the identifierString characters (``a-z A-Z 0-9 * - _ = : +
    | @ .``), but 1.6 names none and deployed identities hold spaces and
    more, so any printable Unicode is accepted except: ``/`` (a topic level),
    ``+`` and ``#`` (MQTT wildcards), the categories above (invisible or
    direction-changing characters that let two identities look the same),
    spaces other than U+0020, and text not in NFC (so a visible name is one
    identity, whether a charger composed its accents or not).
    """
    if not identity:
        raise IdentityError("charge point identity is empty")
    if len(identity) > MAX_IDENTITY_LENGTH:
        raise IdentityError(
            f"charge point identity is longer than {MAX_IDENTITY_LENGTH} characters"
        )
    for ch in identity:
        if ch in "/+#":
            raise IdentityError(f"charge point identity must not contain {ch!r}")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise IdentityError("charge point identity must not contain control characters")
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES or (category == "Zs" and ch != " "):
            raise IdentityError(
                f"charge point identity must not contain U+{ord(ch):04X} ({category})"
            )
    if not unicodedata.is_normalized("NFC", identity):
        raise IdentityError("charge point identity must be in Unicode normalization form NFC")
