# -*- test-case-name: tests.unit.config.test_config -*-
"""
Stage: the INI file into typed, frozen values.

Every section and key the gateway knows is declared once in :data:`SECTIONS`:
its parser, default, model field and comment; anything else in the file is an
error.  The model's fields and the reference file etc/ocppgw.ini follow from
that declaration.  Each error names the section and key (``[mqtt] qos: must
be 0, 1 or 2, not '3'``) and is raised as :class:`ConfigError` before any
service is built.

- :mod:`~ocppgw.config.values`: the parser of each kind of value, and
  :class:`ConfigError`;
- :mod:`~ocppgw.config.declaration`: :class:`Key` and :class:`Section`;
- :mod:`~ocppgw.config.keys`: the :data:`SECTIONS` table (its keys in
  :mod:`~ocppgw.config.keys_gateway` and :mod:`~ocppgw.config.keys_mqtt`);
- :mod:`~ocppgw.config.model`: the frozen dataclasses, :class:`Config` down;
- :mod:`~ocppgw.config.parsing`: reading the INI, :func:`parse` and :func:`load`;
- :mod:`~ocppgw.config.mapping`: the parsed keys onto the model, with the
  derived fields of :mod:`~ocppgw.config.derived`;
- :mod:`~ocppgw.config.reference`: the reference file, rendered.

This stage may import :mod:`ocppgw.ocpp`, :mod:`ocppgw.router.topics`,
:mod:`ocppgw.wire` (codec names) and :mod:`ocppgw.listener.proxy`
(network parsing); it imports nothing of Twisted.
"""

from __future__ import annotations

from ocppgw.config.keys import SECTIONS, Key, Section
from ocppgw.config.model import (
    Config,
    DownstreamConfig,
    ForwardConfig,
    HTTPAuthConfig,
    ListenerConfig,
    LoginLimits,
    MQTTConfig,
    PresenceConfig,
    Topic,
    UpstreamConfig,
)
from ocppgw.config.parsing import load, parse
from ocppgw.config.values import ConfigError

__all__ = [
    "SECTIONS",
    "Config",
    "ConfigError",
    "DownstreamConfig",
    "ForwardConfig",
    "HTTPAuthConfig",
    "Key",
    "ListenerConfig",
    "LoginLimits",
    "MQTTConfig",
    "PresenceConfig",
    "Section",
    "Topic",
    "UpstreamConfig",
    "load",
    "parse",
]
