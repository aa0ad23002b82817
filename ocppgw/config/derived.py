# -*- test-case-name: tests.unit.config.test_config,tests.unit.config.test_admin_config -*-
"""
The model fields that are more than one key's parsed value, each made in one
place: :data:`DERIVATIONS`.

A derivation reads the parsed keys (a key it reads is declared ``derived``,
unless a field takes it as it is too) and returns the fields it fills: a
broker URL split into host and port, topic templates, file names resolved
and checked.  A derivation of no field is a check across keys, made once the
fields of its model are filled.  Each error names its section and key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from ocppgw.config import model
from ocppgw.config.declaration import Values
from ocppgw.config.values import ConfigError, endpoint, gateway_id
from ocppgw.router.topics import TemplateError, TopicTemplate


@dataclass(frozen=True)
class Context:
    """What a derivation reads: every section's keys, and what is built so far."""

    #: Every section of the file, by its name in the file, its keys parsed.
    raw: Mapping[str, Values]
    #: The directory relative file names are relative to (the file's).
    base_dir: str
    #: The section a model of a section that takes a suffix is built from
    #: (``listener:ws``); "" for the others.
    section: str
    #: The fields of the model being built, filled so far (in field order).
    built: Mapping[str, Any]


@dataclass(frozen=True)
class Derivation:
    """The ``fields`` of ``model`` that ``derive`` makes; none: a check."""

    model: type[Any]
    fields: tuple[str, ...]
    derive: Callable[[Context], Mapping[str, Any]]


def _template(section: str, key: str, value: str, *, downstream: bool = False) -> TopicTemplate:
    try:
        return TopicTemplate.parse(value, downstream=downstream)
    except TemplateError as e:
        raise ConfigError(f"[{section}] {key}: {e}") from None


def _resolve(base_dir: str, value: str) -> str:
    """The file name ``value``, written relative to ``base_dir`` (the file's directory)."""
    return os.path.normpath(os.path.join(base_dir, value))


def _file(section: str, key: str, value: str, base_dir: str) -> str:
    """``[section] key``: the name of a file that exists."""
    path = _resolve(base_dir, value)
    if not os.path.isfile(path):
        raise ConfigError(f"[{section}] {key}: no such file: {path}")
    return path


def _credentials(ctx: Context) -> Mapping[str, Any]:
    """``[auth] credentials``: the file, if any; some listeners need one."""
    credentials = ctx.raw["auth"]["credentials"] or None
    listeners: tuple[model.ListenerConfig, ...] = ctx.built["listeners"]
    # With [auth] http_url the HTTP service checks passwords: no file needed.
    basic = not ctx.raw["auth"]["http_url"]
    if credentials is None and any(
        (basic and li.security_profile in (1, 2)) or li.cert_identity == "serial"
        for li in listeners
    ):
        raise ConfigError(
            "[auth] credentials: required when a listener has security_profile 1 or 2 "
            "(HTTP Basic) and http_url is empty, or cert_identity = serial"
        )
    if credentials is None and ctx.raw["auth"]["http_on_error"] == "file" and not basic:
        raise ConfigError("[auth] http_on_error: file needs [auth] credentials")
    if credentials is not None:
        credentials = _file("auth", "credentials", credentials, ctx.base_dir)
    return {"credentials": credentials}


def _http_auth(ctx: Context) -> Mapping[str, Any]:
    """``[auth] http_*``: the HTTP authentication callout, if ``http_url`` is set."""
    auth = ctx.raw["auth"]
    url = auth["http_url"]
    if not url:
        return {"http_auth": None}
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"[auth] http_url: not an http:// or https:// URL with a host: {url!r}")
    headers = auth["http_headers"] or None
    if headers is not None:
        headers = _file("auth", "http_headers", headers, ctx.base_dir)
    config = model.HTTPAuthConfig(
        url, auth["http_timeout"], auth["http_cache"], auth["http_on_error"], headers
    )
    return {"http_auth": config}


def _schema_dir(ctx: Context) -> Mapping[str, Any]:
    """``[validation] schema_dir``, if set: a directory."""
    value = ctx.raw["validation"]["schema_dir"]
    if not value:
        return {"schema_dir": None}
    schema_dir = _resolve(ctx.base_dir, value)
    if not os.path.isdir(schema_dir):
        raise ConfigError(f"[validation] schema_dir: no such directory: {schema_dir}")
    return {"schema_dir": schema_dir}


def _journal(ctx: Context) -> Mapping[str, Any]:
    """``[gateway] journal``: off, a directory, or (empty) where the process may keep state."""
    value = ctx.raw["gateway"]["journal"].strip()
    if value.lower() == "off":
        return {"journal": None}
    if value:
        return {"journal": _resolve(ctx.base_dir, value)}
    if os.geteuid() == 0:
        return {"journal": "/var/lib/ocppgw"}
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return {"journal": os.path.join(state, "ocppgw")}


def runtime_directory() -> str:
    """
    Where ``[admin] endpoint = local`` puts its socket: a directory of this
    user's.  ``$OCPPGW_RUNTIME_DIR`` first; then ``/run/ocppgw`` for root,
    whatever ``$XDG_RUNTIME_DIR`` says (a root login shell has one, a root
    service has none: ``ocppgw-ctl`` from the one must find the other's
    socket); then ``$XDG_RUNTIME_DIR/ocppgw``; then the temporary directory.
    """
    chosen = os.environ.get("OCPPGW_RUNTIME_DIR")
    if chosen:
        return chosen
    if os.geteuid() == 0:
        return "/run/ocppgw"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "ocppgw")
    return os.path.join(tempfile.gettempdir(), f"ocppgw-{os.geteuid()}")


def _admin_endpoint(ctx: Context) -> Mapping[str, Any]:
    """``[admin] endpoint``: ``local`` (a UNIX socket named after the gateway), a string, off."""
    value = ctx.raw["admin"]["endpoint"].strip()
    if value != "local":
        return {"endpoint": endpoint(value) or None, "local": None}
    try:
        name = gateway_id(ctx.raw["gateway"]["id"].strip())
    except ValueError as e:
        raise ConfigError(f"[gateway] id: {e}") from None
    path = os.path.join(runtime_directory(), f"{name}.sock")
    # lockfile: a second gateway of this id is refused; a dead one's socket replaced.
    escaped = path.replace("\\", "\\\\").replace(":", "\\:")
    return {"endpoint": f"unix:{escaped}:mode=600:lockfile=1", "local": path}


def _listener_name(ctx: Context) -> Mapping[str, Any]:
    """A listener's name: the suffix of its section."""
    return {"name": ctx.section.partition(":")[2]}


def _listener_tls(ctx: Context) -> Mapping[str, Any]:
    """A listener's TLS files, checked against its profile."""
    section, values = ctx.section, ctx.raw[ctx.section]
    profile = values["security_profile"]
    certs = tuple(_file(section, "tls_cert", v, ctx.base_dir) for v in values["tls_cert"])
    keys = tuple(_file(section, "tls_key", v, ctx.base_dir) for v in values["tls_key"])
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
    crls = tuple(_file(section, "tls_crl", v, ctx.base_dir) for v in values["tls_crl"])
    if crls and not (certs and ca):
        raise ConfigError(
            f"[{section}] tls_crl: only used with security_profile 3 and tls_cert "
            "(a TLS-offloading proxy checks revocation itself)"
        )
    return {
        "tls_cert": certs,
        "tls_key": keys,
        "tls_ca": _file(section, "tls_ca", ca, ctx.base_dir) if ca else None,
        "tls_crl": crls,
    }


def _default_version_spoken(ctx: Context) -> Mapping[str, Any]:
    """A listener's default_version is one of ``[gateway] versions``."""
    dv = ctx.built["default_version"]
    if dv and dv not in ctx.raw["gateway"]["versions"]:
        raise ConfigError(f"[{ctx.section}] default_version: {dv} is not in [gateway] versions")
    return {}


def _broker(ctx: Context) -> Mapping[str, Any]:
    """``[mqtt] broker`` (with embedded_host and embedded_port): where, and whether TLS."""
    m = ctx.raw["mqtt"]
    value = m["broker"]
    if value == "embedded":
        return {
            "embedded": True,
            "host": m["embedded_host"],
            "port": m["embedded_port"],
            "tls": False,
        }
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
    return {"embedded": False, "host": unquote(url.hostname), "port": port, "tls": tls}


def _client_id(ctx: Context) -> Mapping[str, Any]:
    """``[mqtt] client_id``, by default ``ocppgw-<[gateway] id>``."""
    return {"client_id": ctx.raw["mqtt"]["client_id"] or f"ocppgw-{ctx.raw['gateway']['id']}"}


def _mqtt_tls(ctx: Context) -> Mapping[str, Any]:
    """``[mqtt]`` TLS files: only with mqtts://, the certificate with its key."""
    m = ctx.raw["mqtt"]
    files: dict[str, str | None] = {}
    for key in ("tls_ca", "tls_cert", "tls_key"):
        if m[key] and not ctx.built["tls"]:
            raise ConfigError(f"[mqtt] {key}: only used with broker = mqtts://HOST:PORT")
        files[key] = _file("mqtt", key, m[key], ctx.base_dir) if m[key] else None
    if bool(m["tls_cert"]) != bool(m["tls_key"]):
        raise ConfigError("[mqtt] tls_key: tls_cert and tls_key go together")
    return files


def _embedded_users(ctx: Context) -> Mapping[str, Any]:
    """
    ``[mqtt] embedded_users`` (with username), and anonymous access to the
    embedded broker only on loopback (issue 24).
    """
    m, built = ctx.raw["mqtt"], ctx.built
    users = m["embedded_users"].strip()
    login = built["username"] is not None and built["password"] is not None
    if not built["embedded"]:
        if users:
            raise ConfigError("[mqtt] embedded_users: only used with broker = embedded")
        return {"embedded_users": None}
    if users and not login:
        raise ConfigError(
            "[mqtt] embedded_users: needs [mqtt] username and password too (the gateway's own)"
        )
    if built["username"] is not None and built["password"] is None:
        raise ConfigError("[mqtt] password: the embedded broker needs one with username")
    if not login and not _loopback(built["host"]):
        raise ConfigError(
            f"[mqtt] embedded_host: {built['host']} is not a loopback address, and the "
            "embedded broker allows anonymous clients only there: set [mqtt] username and "
            "password (the gateway's login) and embedded_users = FILE (the backends'), "
            "or embedded_host = 127.0.0.1"
        )
    return {
        "embedded_users": _file("mqtt", "embedded_users", users, ctx.base_dir) if users else None
    }


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _reconnect_order(ctx: Context) -> Mapping[str, Any]:
    """``[mqtt] reconnect_min`` is at most reconnect_max."""
    if ctx.built["reconnect_min"] > ctx.built["reconnect_max"]:
        raise ConfigError("[mqtt] reconnect_min: must not be larger than reconnect_max")
    return {}


def _upstream(ctx: Context) -> Mapping[str, Any]:
    """``[upstream]`` topics with their codecs, and its ``[upstream:ACTION]`` overrides."""
    up = ctx.raw["upstream"]
    codec = up["codec"]
    call = model.Topic(_template("upstream", "topic", up["topic"]), codec)
    overrides: dict[str, model.Topic] = {}
    for section, values in ctx.raw.items():
        if not section.startswith("upstream:"):
            continue
        action = section.partition(":")[2]
        if not re.fullmatch(r"[A-Za-z0-9]+", action):
            raise ConfigError(f"[{section}]: {action!r} is not an OCPP action name")
        template = (
            _template(section, "topic", values["topic"]) if values["topic"] else call.template
        )
        overrides[action] = model.Topic(template, values["codec"] or codec)
    reply = _template("upstream", "reply_topic", up["reply_topic"])
    error = _template("upstream", "error_topic", up["error_topic"])
    invalid = up["invalid_topic"]
    return {
        "call": call,
        "reply": model.Topic(reply, up["reply_codec"] or codec),
        "error": model.Topic(error, up["error_codec"] or codec),
        "overrides": MappingProxyType(overrides),
        "invalid": _template("upstream", "invalid_topic", invalid) if invalid else None,
    }


def _downstream_topic(ctx: Context) -> Mapping[str, Any]:
    """``[dnstream] topic`` and codec: where CALLs to charge points come in."""
    dn = ctx.raw["dnstream"]
    topic = _template("dnstream", "topic", dn["topic"], downstream=True)
    return {"topic": model.Topic(topic, dn["codec"])}


def _presence(ctx: Context) -> Mapping[str, Any]:
    """``[presence]``: the retained topics of charge points and of the gateway."""
    pr = ctx.raw["presence"]
    templates = {
        "topic": _template("presence", "topic", pr["topic"]),
        "gateway_topic": _template("presence", "gateway_topic", pr["gateway_topic"]),
    }
    if "${cid}" not in templates["topic"].text:
        raise ConfigError("[presence] topic: must contain ${cid}")
    for key, template in templates.items():
        if "${shard}" in template.text:  # every instance must read every charge point's
            raise ConfigError(f"[presence] {key}: ${{shard}} is only for upstream topics")
    return templates


def _admin_token(ctx: Context) -> Mapping[str, Any]:
    """``[admin] token``, given inline or in ``token_file``."""
    admin = ctx.raw["admin"]
    token = admin["token"] or None
    if admin["token_file"]:
        if token is not None:
            raise ConfigError("[admin] token, token_file: set one of them, not both")
        path = _file("admin", "token_file", admin["token_file"], ctx.base_dir)
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"[admin] token_file: cannot read {path}: {e}") from None
        if not token:
            raise ConfigError(f"[admin] token_file: {path} is empty")
    return {"token": token}


#: Every derivation, by model.  A model's fields are filled in their order, a
#: derivation when its first field comes: the first problem found is reported.
DERIVATIONS = (
    Derivation(model.Config, ("credentials",), _credentials),
    Derivation(model.Config, ("http_auth",), _http_auth),
    Derivation(model.Config, ("schema_dir",), _schema_dir),
    Derivation(model.Config, ("journal",), _journal),
    Derivation(model.ListenerConfig, ("name",), _listener_name),
    Derivation(model.ListenerConfig, ("tls_cert", "tls_key", "tls_ca", "tls_crl"), _listener_tls),
    Derivation(model.ListenerConfig, (), _default_version_spoken),
    Derivation(model.MQTTConfig, ("embedded", "host", "port", "tls"), _broker),
    Derivation(model.MQTTConfig, ("client_id",), _client_id),
    Derivation(model.MQTTConfig, ("tls_ca", "tls_cert", "tls_key"), _mqtt_tls),
    Derivation(model.MQTTConfig, ("embedded_users",), _embedded_users),
    Derivation(model.MQTTConfig, (), _reconnect_order),
    Derivation(model.UpstreamConfig, ("call", "reply", "error", "overrides", "invalid"), _upstream),
    Derivation(model.DownstreamConfig, ("topic",), _downstream_topic),
    Derivation(model.PresenceConfig, ("topic", "gateway_topic"), _presence),
    Derivation(model.AdminConfig, ("endpoint", "local"), _admin_endpoint),
    Derivation(model.AdminConfig, ("token",), _admin_token),
)
