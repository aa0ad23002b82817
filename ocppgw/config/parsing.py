# -*- test-case-name: tests.unit.config.test_config,tests.unit.config.test_admin_config -*-
"""
Reading the INI file: :func:`parse` checks every section and key against
:data:`~ocppgw.config.keys.SECTIONS`, then builds the typed values of
:mod:`ocppgw.config.model`; :func:`load` reads the file first.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ocppgw.config import model
from ocppgw.config.declaration import Key, Section
from ocppgw.config.keys import SECTIONS
from ocppgw.config.values import ConfigError
from ocppgw.router.topics import TemplateError, TopicTemplate

#: The parsed keys of one section, by name.
Values = dict[str, Any]

_T = TypeVar("_T")


def _spec_for(section: str) -> Section | None:
    if section in SECTIONS and not section.endswith(":"):
        return SECTIONS[section]
    base, sep, suffix = section.partition(":")
    if sep and suffix and base + ":" in SECTIONS:
        return SECTIONS[base + ":"]
    return None


def _read(parser: configparser.ConfigParser) -> dict[str, Values]:
    """Every section of the file, each key parsed, defaults filled in."""
    out: dict[str, Values] = {}
    for section in parser.sections():
        found = _spec_for(section)
        if found is None:
            known = ", ".join(f"[{s}NAME]" if s.endswith(":") else f"[{s}]" for s in SECTIONS)
            raise ConfigError(f"[{section}]: unknown section; known sections: {known}")
        out[section] = _read_section(parser, section, found.keys)
    for name, spec in SECTIONS.items():
        if not name.endswith(":") and name not in out:
            out[name] = {
                k: key.parse(key.default) for k, key in spec.keys.items() if key.default is not None
            }
    return out


def _read_section(
    parser: configparser.ConfigParser, section: str, keys: Mapping[str, Key]
) -> Values:
    values: Values = {}
    items = dict(parser.items(section, raw=True))
    for k in items:
        if k not in keys:
            raise ConfigError(
                f"[{section}] {k}: unknown key; known keys: {', '.join(sorted(keys))}"
            )
    for k, key in keys.items():
        raw = items.get(k)
        if raw is None:
            if key.default is None:
                raise ConfigError(f"[{section}] {k}: required key is missing")
            raw = key.default
        try:
            values[k] = key.parse(raw.strip())
        except ValueError as e:
            raise ConfigError(f"[{section}] {k}: {e}") from None
    return values


def _template(section: str, key: str, value: str, *, downstream: bool = False) -> TopicTemplate:
    try:
        return TopicTemplate.parse(value, downstream=downstream)
    except TemplateError as e:
        raise ConfigError(f"[{section}] {key}: {e}") from None


def _broker(value: str) -> tuple[bool, str, int, bool]:
    """(embedded, host, port, tls) of ``[mqtt] broker``."""
    if value == "embedded":
        return True, "", 0, False
    url = urlsplit(value)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname or url.path not in ("", "/"):
        raise ConfigError(
            f"[mqtt] broker: must be 'embedded', mqtt://HOST:PORT or mqtts://HOST:PORT, "
            f"not {value!r}"
        )
    tls = url.scheme == "mqtts"
    try:
        port = url.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"[mqtt] broker: bad port in {value!r}") from None
    return False, unquote(url.hostname), port, tls


def _journal(value: str, base_dir: str) -> str | None:
    """``[gateway] journal``: off, a directory, or (empty) where the process may keep state."""
    if value.strip().lower() == "off":
        return None
    if value.strip():
        return _resolve(base_dir, value.strip())
    if os.geteuid() == 0:
        return "/var/lib/ocppgw"
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(state, "ocppgw")


def _resolve(base_dir: str, value: str) -> str:
    """The file name ``value``, written relative to ``base_dir`` (the file's directory)."""
    return os.path.normpath(os.path.join(base_dir, value))


def _file(section: str, key: str, value: str, base_dir: str) -> str:
    """``[section] key``: the name of a file that exists."""
    path = _resolve(base_dir, value)
    if not os.path.isfile(path):
        raise ConfigError(f"[{section}] {key}: no such file: {path}")
    return path


def _listener_tls(section: str, values: Values, base_dir: str) -> dict[str, Any]:
    """The TLS and proxy keys of a listener, checked against its profile."""
    profile = values["security_profile"]
    certs = tuple(_file(section, "tls_cert", v, base_dir) for v in values["tls_cert"])
    keys = tuple(_file(section, "tls_key", v, base_dir) for v in values["tls_key"])
    if len(certs) != len(keys):
        raise ConfigError(
            f"[{section}] tls_key: {len(keys)} key file(s) for {len(certs)} certificate(s); "
            "list one key per certificate, in the same order"
        )
    if len(certs) > 2:
        raise ConfigError(f"[{section}] tls_cert: at most two (one RSA, one ECDSA)")
    offload = not certs and bool(values["trusted_proxies"])
    if profile >= 2 and not certs and not offload:
        raise ConfigError(
            f"[{section}] tls_cert: required for security_profile {profile} "
            "(or trusted_proxies, for a TLS-offloading proxy)"
        )
    ca = values["tls_ca"]
    if profile == 3 and not ca:
        raise ConfigError(f"[{section}] tls_ca: required for security_profile 3")
    if ca and profile != 3:
        raise ConfigError(f"[{section}] tls_ca: only used with security_profile 3")
    return {
        "tls_cert": certs,
        "tls_key": keys,
        "tls_ca": _file(section, "tls_ca", ca, base_dir) if ca else None,
        "cert_identity": values["cert_identity"],
        "cpo_name": values["cpo_name"] or None,
        "trusted_proxies": values["trusted_proxies"],
        "client_cert_header": values["client_cert_header"],
    }


def _same_named(cls: type[_T], values: Values, **given: Any) -> _T:
    """
    A ``cls`` of ``given``, its other fields filled from the keys of the same
    name: a section's key and its model's field share their name unless the
    value needs more than its parser (then it is in ``given``).
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    return cls(**{n: values[n] for n in names - given.keys() if n in values}, **given)


def _suffixed(raw: dict[str, Values], base: str) -> Iterator[tuple[str, str, Values]]:
    """(section, suffix, values) of each ``[base:SUFFIX]`` section, in file order."""
    for section, values in raw.items():
        if section.startswith(base + ":"):
            yield section, section.partition(":")[2], values


def _listeners(raw: dict[str, Values], base_dir: str) -> tuple[model.ListenerConfig, ...]:
    """``[listener:NAME]``: at least one."""
    versions = raw["gateway"]["versions"]
    listeners = []
    for section, name, values in _suffixed(raw, "listener"):
        listeners.append(
            _same_named(
                model.ListenerConfig,
                values,
                name=name,
                default_version=values["default_version"] or None,
                **_listener_tls(section, values, base_dir),
            )
        )
        dv = values["default_version"]
        if dv and dv not in versions:
            raise ConfigError(f"[{section}] default_version: {dv} is not in [gateway] versions")
    if not listeners:
        raise ConfigError("[listener:NAME]: at least one listener section is required")
    return tuple(listeners)


def _auth(
    auth: Values, listeners: tuple[model.ListenerConfig, ...], base_dir: str
) -> tuple[str | None, model.LoginLimits]:
    """``[auth]``: the credentials file, if any (some listeners need one), and the limits."""
    credentials = auth["credentials"] or None
    if credentials is None and any(
        li.security_profile in (1, 2) or li.cert_identity == "serial" for li in listeners
    ):
        raise ConfigError(
            "[auth] credentials: required when a listener has security_profile 1 or 2 "
            "(HTTP Basic) or cert_identity = serial"
        )
    if credentials is not None:
        credentials = _file("auth", "credentials", credentials, base_dir)
    limits = model.LoginLimits(
        per_address=auth["max_failures_per_address"],
        per_identity=auth["max_failures_per_identity"],
        window=auth["failure_window"],
        table_size=auth["failure_table_size"],
    )
    return credentials, limits


def _mqtt(m: Values, gateway_id: str, base_dir: str) -> model.MQTTConfig:
    """``[mqtt]``: the broker (embedded or not), its TLS files and the client."""
    embedded, host, port, tls = _broker(m["broker"])
    if embedded:
        host, port = m["embedded_host"], m["embedded_port"]
    files: dict[str, str | None] = {}
    for key in ("tls_ca", "tls_cert", "tls_key"):
        if m[key] and not tls:
            raise ConfigError(f"[mqtt] {key}: only used with broker = mqtts://HOST:PORT")
        files[key] = _file("mqtt", key, m[key], base_dir) if m[key] else None
    if bool(m["tls_cert"]) != bool(m["tls_key"]):
        raise ConfigError("[mqtt] tls_key: tls_cert and tls_key go together")
    if m["reconnect_min"] > m["reconnect_max"]:
        raise ConfigError("[mqtt] reconnect_min: must not be larger than reconnect_max")
    return _same_named(
        model.MQTTConfig,
        m,
        embedded=embedded,
        host=host,
        port=port,
        client_id=m["client_id"] or f"ocppgw-{gateway_id}",
        username=m["username"] or None,
        password=m["password"] or None,
        tls=tls,
        **files,
    )


def _upstream(raw: dict[str, Values]) -> model.UpstreamConfig:
    """``[upstream]`` and its ``[upstream:ACTION]`` overrides."""
    up = raw["upstream"]
    codec = up["codec"]
    call = model.Topic(_template("upstream", "topic", up["topic"]), codec)
    overrides: dict[str, model.Topic] = {}
    for section, action, values in _suffixed(raw, "upstream"):
        if not re.fullmatch(r"[A-Za-z0-9]+", action):
            raise ConfigError(f"[{section}]: {action!r} is not an OCPP action name")
        template = (
            _template(section, "topic", values["topic"]) if values["topic"] else call.template
        )
        overrides[action] = model.Topic(template, values["codec"] or codec)
    reply = _template("upstream", "reply_topic", up["reply_topic"])
    error = _template("upstream", "error_topic", up["error_topic"])
    invalid = up["invalid_topic"]
    return model.UpstreamConfig(
        call=call,
        reply=model.Topic(reply, up["reply_codec"] or codec),
        error=model.Topic(error, up["error_codec"] or codec),
        overrides=MappingProxyType(overrides),
        invalid=_template("upstream", "invalid_topic", invalid) if invalid else None,
        awaiting_timeout=up["awaiting_timeout"],
        shards=up["shards"],
    )


def _downstream(dn: Values) -> model.DownstreamConfig:
    """``[dnstream]``: the topic CALLs to charge points come in on, and their queue."""
    topic = _template("dnstream", "topic", dn["topic"], downstream=True)
    return _same_named(model.DownstreamConfig, dn, topic=model.Topic(topic, dn["codec"]))


def _presence(pr: Values) -> model.PresenceConfig:
    """``[presence]``: the retained topics of charge points and of the gateway."""
    presence = model.PresenceConfig(
        topic=_template("presence", "topic", pr["topic"]),
        gateway_topic=_template("presence", "gateway_topic", pr["gateway_topic"]),
    )
    if "${cid}" not in presence.topic.text:
        raise ConfigError("[presence] topic: must contain ${cid}")
    for key, template in (("topic", presence.topic), ("gateway_topic", presence.gateway_topic)):
        if "${shard}" in template.text:  # every instance must read every charge point's
            raise ConfigError(f"[presence] {key}: ${{shard}} is only for upstream topics")
    return presence


def _schema_dir(validation: Values, base_dir: str) -> str | None:
    """``[validation] schema_dir``, if set: a directory."""
    if not validation["schema_dir"]:
        return None
    schema_dir = _resolve(base_dir, validation["schema_dir"])
    if not os.path.isdir(schema_dir):
        raise ConfigError(f"[validation] schema_dir: no such directory: {schema_dir}")
    return schema_dir


def _admin(admin: Values, base_dir: str) -> model.AdminConfig:
    """``[admin]``: the endpoint, and the token given inline or in a file."""
    token = admin["token"] or None
    if admin["token_file"]:
        if token is not None:
            raise ConfigError("[admin] token, token_file: set one of them, not both")
        path = _file("admin", "token_file", admin["token_file"], base_dir)
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"[admin] token_file: cannot read {path}: {e}") from None
        if not token:
            raise ConfigError(f"[admin] token_file: {path} is empty")
    return model.AdminConfig(admin["endpoint"].strip() or None, token, admin["metrics_auth"])


def parse(text: str, source: str = "<string>", base_dir: str = ".") -> model.Config:
    """
    The configuration in the INI ``text``; relative file names in it are
    relative to ``base_dir`` (the directory of the file).

    :raises ConfigError: the first problem, naming its section and key.
    """
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read_string(text, source=source)
    except configparser.Error as e:
        raise ConfigError(f"{source}: {e}") from None
    raw = _read(parser)
    gw = raw["gateway"]
    listeners = _listeners(raw, base_dir)
    credentials, limits = _auth(raw["auth"], listeners, base_dir)
    # Keyword arguments are evaluated in order: the sections are checked in
    # this order, and the first problem found is the one reported.
    return model.Config(
        gateway_id=gw["id"],
        versions=gw["versions"],
        listeners=listeners,
        credentials=credentials,
        mqtt=_mqtt(raw["mqtt"], gw["id"], base_dir),
        upstream=_upstream(raw),
        downstream=_downstream(raw["dnstream"]),
        presence=_presence(raw["presence"]),
        strict=gw["strict"],
        shutdown_timeout=gw["shutdown_timeout"],
        validation_mode=raw["validation"]["mode"],
        schema_dir=_schema_dir(raw["validation"], base_dir),
        local_heartbeat=raw["local"]["heartbeat"],
        login_limits=limits,
        admin=_admin(raw["admin"], base_dir),
        log_format=gw["log_format"],
        shutdown_close=gw["shutdown_close"],
        drain_rate=gw["drain_rate"],
        workers=gw["workers"],
        journal=_journal(gw["journal"], base_dir),
    )


def load(path: str) -> model.Config:
    """The configuration in the file at ``path``; see :func:`parse`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    return parse(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))
