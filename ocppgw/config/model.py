# -*- test-case-name: tests.unit.config.test_config -*-
"""
The typed, frozen values a configuration is parsed into: :class:`Config`, the
values of its sections, and (last) :class:`Topic`, the template and codec that
the upstream and downstream sections are made of.

The defaults and types live in one place, the declaration of each key in
:data:`~ocppgw.config.keys.SECTIONS`: every field here is filled from its
key or by a named derivation (:mod:`~ocppgw.config.mapping`), and
tests/unit/config/test_declaration.py checks that each field has one source
and the type its key's parser gives.  Only :class:`ListenerConfig` keeps
defaults, so that tests and benchmarks can make one listener without an INI
file; that test checks them against the declared ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ocppgw.listener.proxy import DEFAULT_CERT_HEADER, Network
from ocppgw.router.topics import TopicTemplate
from ocppgw.session.flood import DEFAULT_BURST, DEFAULT_RATE

#: The defaults of ``max_handshake_rate`` and ``max_handshake_burst``, measured
#: (docs/performance.md).
DEFAULT_HANDSHAKE_RATE = 500
DEFAULT_HANDSHAKE_BURST = 50


@dataclass(frozen=True)
class ListenerConfig:
    """A ``[listener:NAME]`` section: where charge points connect, and how they log in."""

    name: str
    endpoint: str
    path: str
    security_profile: int
    default_version: str | None
    max_frame_size: int
    handshake_timeout: float
    ping_interval: float = 60.0
    pong_timeout: float = 30.0
    #: Certificate chain files and their keys, pairwise (one RSA, one ECDSA).
    tls_cert: tuple[str, ...] = ()
    tls_key: tuple[str, ...] = ()
    #: The CA(s) client certificates must chain to (profile 3).
    tls_ca: str | None = None
    #: Certificate revocation lists of tls_ca's CAs (profile 3), and what an expired one does.
    tls_crl: tuple[str, ...] = ()
    tls_crl_expired: str = "refuse"
    #: What a client certificate's CN must equal: the identity, or its serial.
    cert_identity: str = "cn"
    #: What a client certificate's O must equal, if set (A00.FR.404).
    cpo_name: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
    client_cert_header: str = DEFAULT_CERT_HEADER
    #: Messages per second one charge point may send (0: no limit) ...
    max_message_rate: int = DEFAULT_RATE
    #: ... and how many beyond the rate at once (a token bucket).
    max_message_burst: int = DEFAULT_BURST
    #: permessage-deflate accepted when offered (RFC 7692), and its bounds.
    compression: bool = True
    compression_window_bits: int = 9
    compression_mem_level: int = 1
    #: ``forward = NAME``: this listener's charge points are relayed to
    #: ``[forward:NAME]`` (ocppgw.forward); None: MQTT mode.
    forward: str | None = None
    #: Handshakes per second admitted (0: no limit) ...
    max_handshake_rate: int = DEFAULT_HANDSHAKE_RATE
    #: ... and how many beyond the rate at once (a token bucket).
    max_handshake_burst: int = DEFAULT_HANDSHAKE_BURST


@dataclass(frozen=True)
class MQTTConfig:
    """``[mqtt]``: the broker, embedded or not, and the client the gateway is to it."""

    embedded: bool
    host: str
    port: int
    client_id: str
    qos: int
    keepalive: int
    username: str | None
    password: str | None
    protocol: str
    session_expiry: int
    max_inflight: int
    max_buffer: int
    reconnect_min: float
    reconnect_max: float
    mosquitto: str
    #: mqtts://: TLS to the broker, its hostname verified with service-identity.
    tls: bool
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    #: The backends' logins to the embedded broker (a file of ``user password``
    #: lines), read when it starts; None: only the gateway's, if any.
    embedded_users: str | None


@dataclass(frozen=True)
class LoginLimits:
    """[auth]: failed logins allowed per address and per identity in a window."""

    per_address: int
    per_identity: int
    window: float
    table_size: int


@dataclass(frozen=True)
class HTTPAuthConfig:
    """[auth] http_*: the operator's HTTP authentication service."""

    #: Where each handshake is POSTed (http:// or https://).
    url: str
    #: Seconds to wait for its answer.
    timeout: float
    #: Seconds an answer is remembered per identity and credentials (0: none).
    cache: float
    #: ``deny`` or ``file``: what a timeout, a failed connection, a non-2xx
    #: status or an unreadable answer means.
    on_error: str
    #: A file of extra request headers ("Name: value" lines), if any.
    headers: str | None


@dataclass(frozen=True)
class UpstreamConfig:
    """``[upstream]``: the topics and codecs of what charge points send."""

    call: Topic
    reply: Topic
    error: Topic
    overrides: Mapping[str, Topic]
    #: Where frames refused by validation are published whole, if anywhere.
    invalid: TopicTemplate | None
    awaiting_timeout: float
    #: What ``${shard}`` counts modulo: a stable hash of the identity.
    shards: int

    def call_topic(self, action: str) -> Topic:
        """The topic of CALLs (and SENDs) of ``action``."""
        return self.overrides.get(action, self.call)


@dataclass(frozen=True)
class DownstreamConfig:
    """``[dnstream]``: the topic of CALLs to charge points, and their queue."""

    topic: Topic
    max_queue: int
    awaiting_timeout: float
    offline_ttl: float
    #: MQTT 5 shared-subscription group answering CALLs for unheld identities.
    offline_group: str


@dataclass(frozen=True)
class PresenceConfig:
    """``[presence]``: the retained topics that say who is connected."""

    #: Retained, per charge point: online or offline, gateway, version, since.
    topic: TopicTemplate
    #: Retained, per gateway instance; its MQTT last will says "offline".
    gateway_topic: TopicTemplate


@dataclass(frozen=True)
class AdminConfig:
    """``[admin]``: the HTTP API, /metrics and /healthz."""

    #: A Twisted server endpoint string; None: no admin endpoint.
    endpoint: str | None
    #: The bearer token of /api/ (and /metrics); None: no token is accepted.
    token: str | None
    #: Whether /metrics needs the token too.
    metrics_auth: bool
    #: ``endpoint = local``: the path of its UNIX socket (mode 0600), whose
    #: file mode is its access control; None for any other endpoint.
    local: str | None


@dataclass(frozen=True)
class RecorderConfig:
    """``[recorder]``: the flight recorder (:mod:`ocppgw.admin.flight`)."""

    #: Frames kept per charge point; 0: off.
    per_station: int
    #: The budget of all histories, in bytes.
    max_memory: int
    #: Seconds a disconnected charge point's history is kept.
    keep: float
    #: Payload fields whose string values are stored as a keyed hash.
    redact: tuple[str, ...]


@dataclass(frozen=True)
class ForwardConfig:
    """``[forward:NAME]``: an existing central system the charge points are relayed to."""

    name: str
    #: ws:// or wss:// URL with ``${cid}`` (the identity, percent-encoded).
    url: str
    #: ``passthrough``, ``none`` or ``credentials``.
    auth: str
    allow_plain_auth: bool
    #: With ``auth = credentials``: the file of identity, user, password lines.
    credentials: str | None
    #: The CA bundle the central system's certificate must chain to; None: the system's.
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    #: Read-only copies: URLs with ``${cid}``.
    mirrors: tuple[str, ...]
    #: Actions a mirror may send to the charge point; empty: all refused.
    mirror_calls: tuple[str, ...]
    #: Where every frame is published; None: no tap.
    tap_topic: TopicTemplate | None
    tap_codec: str
    #: ``observe`` or ``enforce``.
    validation: str
    #: ``close`` or ``hold``.
    on_csms_down: str
    connect_timeout: float


@dataclass(frozen=True)
class Config:
    """The whole configuration, checked: what :func:`~ocppgw.config.parse` returns."""

    gateway_id: str
    versions: tuple[str, ...]
    listeners: tuple[ListenerConfig, ...]
    credentials: str | None
    #: The HTTP authentication callout ([auth] http_url), if set.
    http_auth: HTTPAuthConfig | None
    mqtt: MQTTConfig
    upstream: UpstreamConfig
    downstream: DownstreamConfig
    presence: PresenceConfig
    strict: bool
    #: Restrict charge points the backend answered Pending or Rejected.
    enforce_registration: bool
    shutdown_timeout: float
    validation_mode: str
    schema_dir: str | None
    local_heartbeat: bool
    local_status_notification: bool
    login_limits: LoginLimits
    admin: AdminConfig
    recorder: RecorderConfig
    #: ``text`` or ``json`` (one object per line).
    log_format: str
    #: How charge points are let go on SIGTERM/SIGINT: going-away (1001),
    #: service-restart (1012) or abort (TCP close, no close frame).
    shutdown_close: str
    #: Charge points closed per second when SIGUSR1 drains the instance.
    drain_rate: int
    #: ``[gateway] workers``: processes sharing the listening sockets (ocppgw.workers).
    workers: int
    #: ``[gateway] journal``: the directory of the journals of backend CALLs
    #: held (:mod:`ocppgw.router.journal`); None: none kept.
    journal: str | None
    #: ``[forward:NAME]`` sections: central systems listeners relay to (issue 20).
    forwards: tuple[ForwardConfig, ...]


@dataclass(frozen=True)
class Topic:
    """A topic template and the codec of the messages on it."""

    template: TopicTemplate
    codec: str
