# -*- test-case-name: tests.unit.config.test_config -*-
"""
Every section and key the gateway knows: :class:`Key` and :data:`SECTIONS`.

Each key is declared once, with its parser (from :mod:`ocppgw.config.values`)
and its default as it would be written in the file; a key or section not
declared here is an error in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocppgw.config.values import (
    boolean,
    choice,
    codec,
    file_list,
    gateway_id,
    header_name,
    int_range,
    networks,
    nonempty,
    nonempty_codec,
    qos,
    seconds,
    security_profile,
    share_group,
    text,
    url_path,
    version,
    versions,
    workers,
)
from ocppgw.listener.proxy import DEFAULT_CERT_HEADER
from ocppgw.ocpp.versions import SUPPORTED
from ocppgw.session.flood import DEFAULT_BURST, DEFAULT_RATE


@dataclass(frozen=True)
class Key:
    """One key of a section: how its value is parsed, and its default."""

    parse: Callable[[str], Any]
    #: The default as it would be written in the file; None: the key is required.
    default: str | None


#: Every key of every section.  A section name ending in ``:`` takes a suffix
#: (``[listener:NAME]``, ``[upstream:ACTION]``).
SECTIONS: dict[str, dict[str, Key]] = {
    "gateway": {
        "id": Key(gateway_id, ""),
        "versions": Key(versions, " ".join(SUPPORTED)),
        "strict": Key(boolean, "true"),
        "shutdown_timeout": Key(seconds(), "10"),
        "log_format": Key(choice("text", "json"), "text"),
        "shutdown_close": Key(choice("going-away", "service-restart", "abort"), "going-away"),
        "drain_rate": Key(int_range(1, 1_000_000), "100"),
        "workers": Key(workers, "1"),
        "journal": Key(text, ""),
    },
    "listener:": {
        "endpoint": Key(nonempty, None),
        "path": Key(url_path, "/ocpp"),
        "security_profile": Key(security_profile, "0"),
        "tls_cert": Key(file_list, ""),
        "tls_key": Key(file_list, ""),
        "tls_ca": Key(text, ""),
        "cert_identity": Key(choice("cn", "serial"), "cn"),
        "cpo_name": Key(text, ""),
        "trusted_proxies": Key(networks, ""),
        "client_cert_header": Key(header_name, DEFAULT_CERT_HEADER),
        "default_version": Key(version, ""),
        "max_frame_size": Key(int_range(1024, 16 * 1024 * 1024), "65536"),
        "handshake_timeout": Key(seconds(), "10"),
        "ping_interval": Key(seconds(allow_zero=True), "60"),
        "pong_timeout": Key(seconds(), "30"),
        "max_message_rate": Key(int_range(0, 1_000_000), str(DEFAULT_RATE)),
        "max_message_burst": Key(int_range(1, 1_000_000), str(DEFAULT_BURST)),
    },
    "auth": {
        "credentials": Key(text, ""),
        "max_failures_per_address": Key(int_range(0), "20"),
        "max_failures_per_identity": Key(int_range(0), "10"),
        "failure_window": Key(seconds(), "60"),
        "failure_table_size": Key(int_range(1), "100000"),
    },
    "mqtt": {
        "broker": Key(nonempty, "embedded"),
        "client_id": Key(text, ""),
        "qos": Key(qos, "1"),
        "keepalive": Key(int_range(5, 65535), "30"),
        "username": Key(text, ""),
        "password": Key(text, ""),
        "protocol": Key(choice("5", "3.1.1"), "5"),
        "session_expiry": Key(int_range(0, 2**32 - 1), "300"),
        "max_inflight": Key(int_range(1, 65535), "20000"),
        "max_buffer": Key(int_range(1), "100000"),
        "reconnect_min": Key(seconds(), "0.5"),
        "reconnect_max": Key(seconds(), "30"),
        "embedded_host": Key(nonempty, "127.0.0.1"),
        "embedded_port": Key(int_range(1, 65535), "1883"),
        "mosquitto": Key(text, ""),
        "tls_ca": Key(text, ""),
        "tls_cert": Key(text, ""),
        "tls_key": Key(text, ""),
    },
    "upstream": {
        "topic": Key(nonempty, "ocpp/cp/${cid}/${action}"),
        "codec": Key(nonempty_codec, "json"),
        "reply_topic": Key(nonempty, "ocpp/cp/Reply/${cid}"),
        "reply_codec": Key(codec, ""),
        "error_topic": Key(nonempty, "ocpp/cp/Error/${cid}"),
        "error_codec": Key(codec, ""),
        "invalid_topic": Key(text, ""),
        "awaiting_timeout": Key(seconds(), "30"),
        "shards": Key(int_range(1, 65536), "1"),
    },
    "upstream:": {
        "topic": Key(text, ""),
        "codec": Key(codec, ""),
    },
    "dnstream": {
        "topic": Key(nonempty, "ocpp/cs/${cid}/+/+"),
        "codec": Key(nonempty_codec, "json"),
        "max_queue": Key(int_range(0, 1_000_000), "100"),
        "awaiting_timeout": Key(seconds(), "30"),
        "offline_ttl": Key(seconds(allow_zero=True), "60"),
        "offline_group": Key(share_group, "ocppgw"),
    },
    "validation": {
        "mode": Key(choice("all", "upstream", "dnstream", "off"), "all"),
        "schema_dir": Key(text, ""),
    },
    "local": {
        "heartbeat": Key(boolean, "false"),
    },
    "presence": {
        "topic": Key(nonempty, "ocpp/presence/${cid}"),
        "gateway_topic": Key(nonempty, "ocpp/gateway/${gateway}"),
    },
    "admin": {
        "endpoint": Key(text, "tcp:9100:interface=127.0.0.1"),
        "token": Key(text, ""),
        "token_file": Key(text, ""),
        "metrics_auth": Key(boolean, "true"),
    },
}
