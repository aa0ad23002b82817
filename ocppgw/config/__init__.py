# -*- test-case-name: tests.unit.config.test_config -*-
"""
Stage: the INI file into typed, frozen values.

Every section and key the gateway knows is declared once in :data:`SECTIONS`
with its parser and default; anything else in the file is an error.  Each
error names the section and key (``[mqtt] qos: must be 0, 1 or 2, not '3'``)
and is raised as :class:`ConfigError` before any service is built.

- :mod:`~ocppgw.config.values`: the parser of each kind of value, and
  :class:`ConfigError`;
- :mod:`~ocppgw.config.keys`: :class:`Key` and the :data:`SECTIONS` table;
- :mod:`~ocppgw.config.model`: the frozen dataclasses, :class:`Config` down;
- :mod:`~ocppgw.config.parsing`: reading the INI, :func:`parse` and :func:`load`.

This stage may import :mod:`ocppgw.ocpp`, :mod:`ocppgw.router.topics`,
:mod:`ocppgw.wire` (codec names) and :mod:`ocppgw.listener.proxy`
(network parsing); it imports nothing of Twisted.
"""

from __future__ import annotations

from ocppgw.config.keys import SECTIONS, Key
from ocppgw.config.model import (
    Config,
    DownstreamConfig,
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
    "Key",
    "ListenerConfig",
    "LoginLimits",
    "MQTTConfig",
    "PresenceConfig",
    "Topic",
    "UpstreamConfig",
    "load",
    "parse",
]
