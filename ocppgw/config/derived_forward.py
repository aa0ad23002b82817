# -*- test-case-name: tests.unit.config.test_forward_config -*-
"""
The derived fields of ``[forward:NAME]`` and the check of ``[listener:NAME]
forward``: :data:`FORWARD_DERIVATIONS` (issue 20).  Each error names its
section and key, in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ocppgw.config import model
from ocppgw.config.derived import Context, Derivation
from ocppgw.config.values import ConfigError
from ocppgw.router.topics import TemplateError, TopicTemplate


def check_url(section: str, key: str, url: str) -> str:
    """``[section] key``: a ws:// or wss:// URL with a host, ``${cid}`` in its path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"[{section}] {key}: not a URL: {url!r} ({e})") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"[{section}] {key}: must be ws://HOST/... or wss://HOST/..., not {url!r}"
        )
    if "${cid}" not in parts.path or "${cid}" in url.replace("${cid}", "", 1):
        raise ConfigError(f"[{section}] {key}: must hold ${{cid}} once, in its path: {url!r}")
    if parts.fragment or port == 0:
        raise ConfigError(f"[{section}] {key}: no fragment and no port 0 in {url!r}")
    return url


def _file(section: str, key: str, value: str, base_dir: str) -> str | None:
    if not value:
        return None
    path = os.path.normpath(os.path.join(base_dir, value))
    if not os.path.isfile(path):
        raise ConfigError(f"[{section}] {key}: no such file: {path}")
    return path


def _forward(ctx: Context) -> Mapping[str, Any]:
    """A forward section: its name, URLs, files and tap topic, checked."""
    section, values = ctx.section, ctx.raw[ctx.section]
    url = check_url(section, "url", values["url"])
    mirrors = tuple(check_url(section, "mirrors", m) for m in values["mirrors"].split())
    calls = tuple(values["mirror_calls"].split())
    if calls == ("refuse",):
        calls = ()
    elif not calls or "refuse" in calls:
        raise ConfigError(
            f"[{section}] mirror_calls: refuse, or a space-separated list of Actions, "
            f"not {values['mirror_calls']!r}"
        )
    elif not mirrors:
        raise ConfigError(f"[{section}] mirror_calls: Actions listed, but no mirrors")
    base = ctx.base_dir
    credentials = _file(section, "credentials", values["credentials"], base)
    if (values["auth"] == "credentials") != (credentials is not None):
        raise ConfigError(
            f"[{section}] credentials: required with auth = credentials, and only then"
        )
    cert = _file(section, "tls_cert", values["tls_cert"], base)
    private = _file(section, "tls_key", values["tls_key"], base)
    if (cert is None) != (private is None):
        raise ConfigError(f"[{section}] tls_cert, tls_key: set both or neither")
    ca = _file(section, "tls_ca", values["tls_ca"], base)
    if (ca or cert) and not url.startswith("wss:"):
        raise ConfigError(f"[{section}] tls_ca, tls_cert: only with a wss:// url")
    tap: TopicTemplate | None = None
    if values["tap_topic"]:
        try:
            tap = TopicTemplate.parse(values["tap_topic"])
        except TemplateError as e:
            raise ConfigError(f"[{section}] tap_topic: {e}") from None
    return {
        "name": section.partition(":")[2],
        "url": url,
        "credentials": credentials,
        "tls_ca": ca,
        "tls_cert": cert,
        "tls_key": private,
        "mirrors": mirrors,
        "mirror_calls": calls,
        "tap_topic": tap,
    }


def _listeners_forward(ctx: Context) -> Mapping[str, Any]:
    """Each listener's ``forward`` names a ``[forward:NAME]`` of the file."""
    names = {f.name for f in ctx.built["forwards"]}
    for listener in ctx.built["listeners"]:
        if listener.forward is not None and listener.forward not in names:
            known = ", ".join(sorted(names)) or "none"
            raise ConfigError(
                f"[listener:{listener.name}] forward: no [forward:{listener.forward}] section "
                f"(forward sections: {known})"
            )
    return {}


#: The derivations of forward mode, after :data:`~ocppgw.config.derived.DERIVATIONS`.
FORWARD_DERIVATIONS = (
    Derivation(
        model.ForwardConfig,
        (
            "name",
            "url",
            "credentials",
            "tls_ca",
            "tls_cert",
            "tls_key",
            "mirrors",
            "mirror_calls",
            "tap_topic",
        ),
        _forward,
    ),
    Derivation(model.Config, (), _listeners_forward),
)
