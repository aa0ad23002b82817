# -*- test-case-name: tests.unit.ocpp.test_messages,tests.unit.test_speedups -*-
"""
Speed-up ``json_encoder``: CPython's C encoder, built once.

``json.dumps`` with keyword arguments builds a ``JSONEncoder`` per call, and
its ``encode`` builds the C encoder (``json.encoder.c_make_encoder``, a
private name of the standard library) per call again.  This builds that C
encoder once, with the options :func:`ocppgw.ocpp.jsontext.dumps` needs,
and without the check for reference cycles: what it writes was read from
JSON text or built by the gateway, so it has none (a cycle would end in
RecursionError instead of ValueError).  It writes exactly what
``json.dumps(value, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` writes; the public path is that call.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable

from ocppgw import speedups

#: The CPython versions whose ``c_make_encoder`` signature this was checked against.
TESTED = ">=3.11,<3.14"


def _shape() -> bool:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return False
    encoder = _build(make)
    return "".join(encoder({"a": [1, 2.5, "é"]}, 0)) == '{"a":[1,2.5,"é"]}'


Encoder = Callable[[object, int], list[str]]


def _build(make: Callable[..., Encoder]) -> Encoder:
    options = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
    # (markers, default, encoder, indent, key_separator, item_separator,
    #  sort_keys, skipkeys, allow_nan)
    basestring = json.encoder.encode_basestring
    return make(None, options.default, basestring, None, ":", ",", False, False, False)


def compact_encoder() -> Encoder | None:
    """The C encoder, built once; None when the speed-up is off."""
    if not speedups.check("json_encoder", "python", TESTED, _shape):
        return None
    return _build(json.encoder.c_make_encoder)  # type: ignore[attr-defined]
