# -*- test-case-name: tests.unit.config.test_config -*-
"""
The value parsers of the configuration keys, and :class:`ConfigError`.

Each parser takes the key's raw string (stripped) and returns its typed value
or raises :class:`ValueError` with the part of the message after the section
and key (``must be 0, 1 or 2, not '3'``); the loader adds those and raises
:class:`ConfigError`.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable

from ocppgw import wire
from ocppgw.listener.proxy import Network, parse_networks
from ocppgw.ocpp.versions import SUPPORTED


class ConfigError(Exception):
    """The configuration is not usable; the message names section and key."""


def text(value: str) -> str:
    return value


def nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def endpoint(value: str) -> str:
    """A Twisted server endpoint string; a bare port (``8080``) is ``tcp:8080``."""
    return f"tcp:{value}" if value.isdigit() else value


def required_endpoint(value: str) -> str:
    return endpoint(nonempty(value))


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value, 10)
        except ValueError:
            raise ValueError(f"must be a whole number, not {value!r}") from None
        if n < lo or (hi is not None and n > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise ValueError(f"must be {bound}, not {n}")
        return n

    return parse


def seconds(allow_zero: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            n = float(value)
        except ValueError:
            raise ValueError(f"must be a number of seconds, not {value!r}") from None
        if n != n or n in (float("inf"), float("-inf")) or n < 0 or (n == 0 and not allow_zero):
            raise ValueError(
                f"must be a {'non-negative' if allow_zero else 'positive'} "
                f"number of seconds, not {value!r}"
            )
        return n

    return parse


#: Size suffixes (IEC binary and SI decimal).
_UNITS = {
    "": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}


def size(value: str) -> int:
    """A number of bytes, optionally with a unit: ``65536``, ``64MiB``, ``1GB``."""
    number = value.rstrip("KMGiB")
    unit = value[len(number) :]
    if unit not in _UNITS or not number.strip().isdigit():
        raise ValueError(
            f"must be a number of bytes, optionally with KiB, MiB, GiB, KB, MB or GB, not {value!r}"
        )
    return int(number) * _UNITS[unit]


def field_paths(value: str) -> tuple[str, ...]:
    """Payload field names, separated by spaces: ``idTag idToken.idToken``."""
    paths = tuple(value.split())
    for path in paths:
        if any(not part or not part.replace("_", "").isalnum() for part in path.split(".")):
            raise ValueError(
                f"{path!r} is not a field name or a dotted path of them (like idToken.idToken)"
            )
    return paths


def boolean(value: str) -> bool:
    v = value.lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def workers(value: str) -> int:
    """``auto`` (one per CPU) or a number of processes from 1 to 256."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    try:
        return int_range(1, 256)(value)
    except ValueError:
        raise ValueError(f"must be auto or a whole number from 1 to 256, not {value!r}") from None


def choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {value!r}")
        return value

    return parse


def qos(value: str) -> int:
    if value not in ("0", "1", "2"):
        raise ValueError(f"must be 0, 1 or 2, not {value!r}")
    return int(value)


def versions(value: str) -> tuple[str, ...]:
    items = value.split()
    if not items:
        raise ValueError(f"must name at least one of {' '.join(SUPPORTED)}")
    for v in items:
        if v not in SUPPORTED:
            raise ValueError(f"unknown version {v!r}; supported: {' '.join(SUPPORTED)}")
    if len(set(items)) != len(items):
        raise ValueError("names a version twice")
    return tuple(items)


def version(value: str) -> str:
    if value and value not in SUPPORTED:
        raise ValueError(f"unknown version {value!r}; supported: {' '.join(SUPPORTED)}")
    return value


def codec(value: str) -> str:
    if not value:
        return value  # optional codec keys: empty means "the section's codec"
    try:
        wire.get(value)
    except wire.UnknownCodec as e:
        raise ValueError(str(e)) from None
    return value


def nonempty_codec(value: str) -> str:
    return codec(nonempty(value))


def share_group(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError("must be 1 to 64 of the characters A-Z a-z 0-9 _ . - (or empty: off)")
    return value


def url_path(value: str) -> str:
    if not value.startswith("/") or (value.endswith("/") and value != "/"):
        raise ValueError(f"must start with / and not end with /, not {value!r}")
    return value


def gateway_id(value: str) -> str:
    if not value:
        return socket.gethostname() or "ocppgw"
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise ValueError("must be 1 to 64 of the characters A-Z a-z 0-9 _ . : -")
    return value


def security_profile(value: str) -> int:
    return int_range(0, 3)(value)


def file_list(value: str) -> tuple[str, ...]:
    return tuple(value.split())


def networks(value: str) -> tuple[Network, ...]:
    return parse_networks(value)


def header_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise ValueError(f"must be an HTTP header name (letters, digits, -), not {value!r}")
    return value
