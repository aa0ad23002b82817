"""
The INI configuration, validated whole into frozen, typed values.

Every section and key the gateway knows is declared once in :data:`SECTIONS`
with its parser and default; anything else in the file is an error.  Each
error names the section and key (``[mqtt] qos: must be 0, 1 or 2, not '3'``)
and is raised as :class:`ConfigError` before any service is built.
"""

from __future__ import annotations

from ocppgw.config.keys import SECTIONS, Key
from ocppgw.config.load import load, parse
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
