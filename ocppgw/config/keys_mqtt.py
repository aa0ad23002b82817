# -*- test-case-name: tests.unit.config.test_declaration -*-
"""
The keys of ``[mqtt]`` and of what travels over it (``[upstream]``,
``[upstream:ACTION]``, ``[dnstream]``, ``[presence]``), and of
``[validation]``, ``[local]`` and ``[admin]``.

Laid out like :mod:`~ocppgw.config.keys_gateway`: each key as the reference
file shows it.
"""

from __future__ import annotations

from ocppgw.config import model
from ocppgw.config.declaration import Key, Section
from ocppgw.config.values import (
    boolean,
    choice,
    codec,
    int_range,
    nonempty,
    nonempty_codec,
    qos,
    seconds,
    share_group,
    text,
)

# fmt: off
MQTT = Section(model.MQTTConfig, keys={
    "broker": Key(nonempty, "embedded", derived=True, doc="""
        embedded: the gateway starts, supervises and stops a local mosquitto on
        embedded_host:embedded_port.  Otherwise mqtt://HOST:PORT of a broker, or
        mqtts://HOST:PORT (default port 8883) for TLS: the broker's certificate
        must chain to tls_ca and be valid for HOST (checked with service-identity).
    """),
    "client_id": Key(text, "", derived=True, doc="""
        Default: ocppgw-<[gateway] id>.
    """),
    "qos": Key(qos, "1", doc="""
        QoS of every publish and subscription: 0, 1 or 2.  With 1 or 2, an upstream
        message counts as delivered only once the broker acknowledged it.
    """),
    "keepalive": Key(int_range(5, 65535), "30", doc="""
        MQTT keepalive in seconds.
    """),
    "username": Key(text, "", optional=True, doc="""
        The gateway's login to the broker. With broker = embedded, username and
        password make the embedded broker refuse anonymous clients and let in
        only this login and those of embedded_users.
    """),
    "password": Key(text, "", optional=True),
    "protocol": Key(choice("5", "3.1.1"), "5", doc="""
        MQTT protocol version: 5 or 3.1.1.  Every connect (the first after a
        restart too) resumes the session the broker keeps for client_id, so
        downstream messages sent while the gateway is away are delivered after.
    """),
    "session_expiry": Key(int_range(0, 2**32 - 1), "300", doc="""
        Seconds the broker keeps this gateway's session after a disconnect (MQTT 5;
        with 3.1.1 the broker's own expiry applies).  0: no session, clean starts.
    """),
    "max_inflight": Key(int_range(1, 65535), "20000", doc="""
        QoS 1 publishes awaiting PUBACK at once; the rest wait, in order. Large, so
        that a reconnect storm's presence messages never queue behind the window.
        With MQTT 5 the gateway also keeps within the Receive Maximum the broker
        states in its CONNACK.
    """),
    "max_buffer": Key(int_range(1), "100000", doc="""
        Messages that may wait for the broker (in flight and queued, e.g. during an
        outage); beyond that a charge point's CALL is answered with a CALLERROR.
    """),
    "reconnect_min": Key(seconds(), "0.5", doc="""
        Reconnect backoff, doubling from reconnect_min to reconnect_max seconds.
    """),
    "reconnect_max": Key(seconds(), "30"),
    "embedded_host": Key(nonempty, "127.0.0.1", derived=True, doc="""
        Where the embedded broker listens. Anyone who reaches it can send the
        charge points commands, so an address other than loopback (127.0.0.1,
        ::1, localhost) is refused unless username and password are set; then
        the broker lets in no anonymous client.
    """),
    "embedded_port": Key(int_range(1, 65535), "1883", derived=True, doc="""
        A port another process already listens on stops the gateway at start,
        naming that process; to use that broker instead, set broker =
        mqtt://127.0.0.1:PORT.
    """),
    "embedded_users": Key(text, "", derived=True, doc="""
        With broker = embedded and username: a file of the backends' logins to
        the embedded broker, one "user password" per line (# comments), relative
        to this file; keep it mode 0600. Read at start; the gateway writes the
        broker's password file (hashed, mode 0600) itself.
    """),
    "mosquitto": Key(text, "", doc="""
        Path of the mosquitto binary for the embedded broker. Default: found on
        PATH or in /usr/sbin, /usr/local/sbin, /usr/bin, /usr/local/bin.
    """),
    "tls_ca": Key(text, "", derived=True, doc="""
        mqtts:// only: the CA certificate(s) of the broker (PEM). Default: the
        system's CAs.
    """),
    "tls_cert": Key(text, "", derived=True, doc="""
        mqtts:// only: a client certificate (PEM chain) and its key, if the broker
        asks for one.
    """),
    "tls_key": Key(text, "", derived=True),
})

UPSTREAM = Section(model.UpstreamConfig, keys={
    "topic": Key(nonempty, "ocpp/cp/${cid}/${action}", derived=True, doc="""
        Topic of the charge points' CALLs (and 2.1 SENDs).
    """),
    "codec": Key(nonempty_codec, "json", derived=True, doc="""
        Codec of every upstream topic, unless reply_codec, error_codec or an
        [upstream:ACTION] section says otherwise.
    """),
    "reply_topic": Key(nonempty, "ocpp/cp/Reply/${cid}", derived=True, doc="""
        Topic of the charge points' CALLRESULTs.
    """),
    "reply_codec": Key(codec, "", derived=True, doc="""
        Default: codec.
    """),
    "error_topic": Key(nonempty, "ocpp/cp/Error/${cid}", derived=True, doc="""
        Topic of CALLERRORs and CALLRESULTERRORs, and of the error envelopes that
        the gateway publishes itself (Origin "gateway": Offline, QueueFull,
        Timeout, Invalid, Unmatched, Disconnected, ...).
    """),
    "error_codec": Key(codec, "", derived=True, doc="""
        Default: codec.
    """),
    "invalid_topic": Key(text, "", derived=True, doc="""
        When set, every frame refused by validation is also published here whole
        and unaltered (raw text), for debugging non-compliant chargers.
    """),
    "awaiting_timeout": Key(seconds(), "30", doc="""
        Seconds the backend has to answer a charge point's CALL; then the charge
        point gets CALLERROR InternalError and the backend a Timeout error envelope.
    """),
    "shards": Key(int_range(1, 65536), "1", doc="""
        What ${shard} counts modulo, in any upstream topic: a stable hash (CRC-32)
        of the identity modulo shards, 0 to shards-1. With topic =
        ocpp/cp/${shard}/${cid}/${action}, backend worker k subscribes to
        ocpp/cp/k/# and sees each of its charge points' messages in order.
    """),
})

UPSTREAM_ACTION = Section(None, suffix="BootNotification", commented=True, doc="""
    Per-action overrides of the CALL topic and codec, one section per Action;
    a key left out (or empty) keeps [upstream] topic or codec:
""", keys={
    "topic": Key(text, "", derived=True, example="ocpp/cp/${cid}/Notify/${action}"),
    "codec": Key(codec, "", derived=True, example="json"),
})

DNSTREAM = Section(model.DownstreamConfig, keys={
    "topic": Key(nonempty, "ocpp/cs/${cid}/+/+", derived=True, doc="""
        The topic filter subscribed for each connected charge point; it must hold
        ${cid}. ${action}, ${type} and ${id} become + in the subscription.
        Backends publish CALLs, CALLRESULTs and CALLERRORs for a charge point here.
    """),
    "codec": Key(nonempty_codec, "json", derived=True),
    "max_queue": Key(int_range(0, 1_000_000), "100", doc="""
        Backend CALLs that may wait behind the one in flight, per charge point;
        beyond that: a QueueFull error envelope.
    """),
    "awaiting_timeout": Key(seconds(), "30", doc="""
        Seconds a charge point has to answer a backend CALL; then a Timeout error
        envelope (an answer that comes later is still published, with Late: true).
        Also the age at which a CALL carrying a Timestamp (when the backend sent
        it) is answered Expired instead of sent.
    """),
    "offline_ttl": Key(seconds(allow_zero=True), "60", doc="""
        Seconds the downstream subscription outlives a disconnect: CALLs arriving
        then are held and delivered if the charge point reconnects in time, else
        answered with an Offline error envelope.
    """),
    "offline_group": Key(share_group, "ocppgw", doc="""
        A CALL for a charge point that no gateway instance has (never connected,
        or gone longer than offline_ttl) is answered with an Offline error envelope
        by exactly one instance: the one the broker picks through the MQTT 5 shared
        subscription $share/GROUP/<topic with ${cid} as +>. All instances sharing a
        broker use the same group. Empty: off. Needs [mqtt] protocol = 5.
    """),
})

VALIDATION = Section(model.Config, keys={
    "mode": Key(choice("all", "upstream", "dnstream", "off"), "all", field="validation_mode",
                doc="""
        JSON schema validation of payloads (the schemas of the ocpp package):
        all, upstream (charge point messages only), dnstream (backend messages
        only) or off.
    """),
    "schema_dir": Key(text, "", derived=True, doc="""
        A directory with schemas to use instead, laid out as v16/, v201/, v21/.
        Every schema in it is checked at start; a broken one stops the gateway.
    """),
})

LOCAL = Section(model.Config, keys={
    "heartbeat": Key(boolean, "false", field="local_heartbeat", doc="""
        true: answer Heartbeat in the gateway with currentTime, and still publish
        it upstream as an event (marked "Answered": true; the backend must not
        answer it).
    """),
    "status_notification": Key(boolean, "false", field="local_status_notification", doc="""
        true: answer StatusNotification in the gateway with its empty result
        (the same in 1.6, 2.0.1 and 2.1), and still publish it upstream as an
        event (marked "Answered": true; the backend must not answer it).
    """),
})

PRESENCE = Section(model.PresenceConfig, keys={
    "topic": Key(nonempty, "ocpp/presence/${cid}", derived=True, doc="""
        Retained, per charge point: {"ChargePointId", "Online", "Gateway",
        "Protocol", "RemoteAddress", "Since", "Registration"}; Registration is
        the backend's last BootNotification answer (null before one).
        Instances sharing a broker read it to close a connection that a newer
        one on another instance replaced.
        Both topics refuse ${shard}: every instance reads every charge point's.
    """),
    "gateway_topic": Key(nonempty, "ocpp/gateway/${gateway}", derived=True, doc="""
        Retained, per instance: {"Gateway", "Online", "Since"}; the instance's MQTT
        last will sets Online false, marking all its charge points gone.
    """),
})

ADMIN = Section(model.AdminConfig, keys={
    "endpoint": Key(text, "local", derived=True, doc="""
        The admin HTTP API (/api/v1/...), Prometheus metrics (/metrics) and
        health (/healthz). local: a UNIX socket named after [gateway] id,
        DIR/ID.sock, mode 0600 (DIR: $OCPPGW_RUNTIME_DIR if set, else
        /run/ocppgw as root, else $XDG_RUNTIME_DIR/ocppgw, else the temporary
        directory's ocppgw-UID), where two
        gateways of one host never collide; ocppgw-ctl --config FILE finds it,
        and only the gateway's user (and root) may connect, so no token is
        asked there. Else a Twisted server endpoint string, e.g. for Prometheus:
          endpoint = tcp:9100:interface=127.0.0.1
        (a bare port, 9100, means tcp:9100 on every interface). Empty: off.
        A port or socket that cannot be listened on stops the gateway: one line
        naming this key, exit status 1.
    """),
    "token": Key(text, "", derived=True, doc="""
        The bearer token every /api/ route (and /metrics) requires:
          Authorization: Bearer TOKEN
        Without one, those routes answer 401; /healthz is always open.
    """),
    "token_file": Key(text, "", derived=True, doc="""
        Or: a file holding the token (surrounding whitespace ignored), relative
        to this file. Not both.
    """),
    "metrics_auth": Key(boolean, "true", doc="""
        false: /metrics answers without the token (for a Prometheus on a trusted
        network).
    """),
})
# fmt: on
