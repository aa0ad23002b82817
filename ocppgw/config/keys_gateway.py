# -*- test-case-name: tests.unit.config.test_declaration -*-
"""
The keys of ``[gateway]``, ``[listener:NAME]`` and ``[auth]``: the instance,
and where and how charge points connect to it.

Each :class:`~ocppgw.config.declaration.Key` is the whole of a key: parser,
default, model field and its comment in etc/ocppgw.ini.  The table is laid out
by hand (``fmt: off``) so that each key reads the way the reference file shows it.
"""

from __future__ import annotations

from ocppgw.config import model
from ocppgw.config.declaration import Key, Section
from ocppgw.config.values import (
    boolean,
    choice,
    file_list,
    gateway_id,
    header_name,
    int_range,
    networks,
    required_endpoint,
    seconds,
    security_profile,
    text,
    url_path,
    version,
    versions,
    workers,
)
from ocppgw.listener.proxy import DEFAULT_CERT_HEADER
from ocppgw.ocpp.versions import SUPPORTED
from ocppgw.session.flood import DEFAULT_BURST, DEFAULT_RATE

# fmt: off
GATEWAY = Section(model.Config, keys={
    "id": Key(gateway_id, "", field="gateway_id", doc="""
        This instance's name, unique among the instances sharing a broker.
        Default: the host name.
    """),
    "versions": Key(versions, " ".join(SUPPORTED), doc="""
        The OCPP versions (WebSocket subprotocols) spoken, space-separated.
    """),
    "strict": Key(boolean, "true", doc="""
        true: a charge point's second CALL while its first still waits for the
        backend gets a CALLERROR (OCPP-J: one CALL in flight per direction).
        false: let it through, for non-compliant chargers; answers match by id.
    """),
    "enforce_registration": Key(boolean, "true", doc="""
        true: a charge point whose BootNotification the backend answered
        Pending or Rejected may send only BootNotification (and, while
        Pending, the CALLs a TriggerMessage asked for); any other CALL gets
        CALLERROR SecurityError and is not published (OCPP 1.6 §4.2, §4.2.1;
        2.0.1 and 2.1 B02.FR.09, B03.FR.07); while a 2.0.1 or 2.1 charge
        point is Rejected, the backend's CALLs are not sent and get a
        NotAccepted error envelope (B03.FR.03). false: relay every CALL.
    """),
    "shutdown_timeout": Key(seconds(), "10", doc="""
        On SIGTERM/SIGINT: seconds to wait for outstanding PUBACKs and closing
        WebSockets before exiting. A stop that waits for the backend's answers to
        charge point CALLs logs at once how many it waits for, and how long at most.
    """),
    "log_format": Key(choice("text", "json"), "text", doc="""
        How log lines are written: text (one line each, for people) or json (one
        JSON object per line: time, level, namespace, text, and the identity and
        remote address when the line is about a charge point). With workers above
        1 every line of every process is written by the supervisor: in json each
        worker's has the field worker (its index), in text it starts "worker N:".
        The same warning repeated more than 10 times in 60 s is held back, and a
        count of what was held back is logged once the minute is over.
    """),
    "shutdown_close": Key(choice("going-away", "service-restart", "abort"), "going-away", doc="""
        On SIGTERM/SIGINT, how connected charge points are let go: going-away
        (close code 1001), service-restart (1012), or abort (the TCP connection is
        closed without a close frame: some chargers never reconnect after one).
    """),
    "drain_rate": Key(int_range(1, 1_000_000), "100", doc="""
        On SIGUSR1 the instance drains: it stops accepting and closes at most this
        many charge points per second (1001), so the fleet moves to the other
        instances gradually; it exits when none is left.
    """),
    "workers": Key(workers, "1", doc="""
        Processes that share the listening sockets (SO_REUSEPORT): 1, a number, or
        auto (one per CPU the gateway may run on). Each worker is an instance of its
        own, as if started separately: gateway id and MQTT client id get "-w<N>"
        appended (N from 0), and takeover, presence and offline answers between
        workers work as between instances. Needs tcp: listener endpoints. With an
        embedded broker, the first process runs it and the workers connect to it.
    """),
    "journal": Key(text, "", derived=True, doc="""
        Where each process keeps the journal of the backend CALLs it holds (queued
        for a charge point, or sent and waiting for the answer), one file per MQTT
        client id: a process that is killed (SIGKILL, OOM, a crash) answers them
        when it starts again (Disconnected if sent, Shutdown if not), so no
        backend CALL is left without an answer. Empty: /var/lib/ocppgw as root,
        else $XDG_STATE_HOME/ocppgw (~/.local/state/ocppgw); off: no journal.
    """),
})

LISTENER = Section(model.ListenerConfig, suffix="ws", required=True, doc="""
    One or more listeners, each [listener:NAME].
""", keys={
    "endpoint": Key(required_endpoint, None, example="tcp:8080:interface=127.0.0.1", doc="""
        A Twisted server endpoint string: tcp:PORT, tcp:PORT:interface=ADDR, ...
        (required); a bare port, 8080, means tcp:8080 (every interface). A port
        that cannot be listened on (already in use) stops the gateway: one line
        naming this key, and exit status 1. A tcp: or tcp6: endpoint (options
        port, interface, backlog) takes at most 16 new connections a turn of
        the event loop, so that no turn is spent on a storm's arrivals alone;
        backlog (default 50) is how many more the kernel holds meanwhile.
    """),
    "path": Key(url_path, "/ocpp", doc="""
        Charge points connect to ws://HOST:PORT/PATH/IDENTITY.
    """),
    "security_profile": Key(security_profile, "0", example="0", doc="""
        0: no authentication (anyone may connect as any identity; a warning is
           logged at start); 1: HTTP Basic, the username is the identity and the
           password is checked against [auth] credentials; 2: TLS (wss) and HTTP
           Basic; 3: TLS with a client certificate (mutual TLS), no password.
        An identity registered at a higher profile in [auth] credentials
        (profile=N) is refused here with 403 (no downgrade, A00.FR.005).
    """),
    "tls_cert": Key(file_list, "", derived=True, doc="""
        Profiles 2 and 3: the server certificate chain files (PEM, leaf first) and
        their private keys, space-separated and pairwise: at most one RSA and one
        ECDSA certificate, both served (A00.FR.317), e.g.
          tls_cert = rsa.pem ecdsa.pem
          tls_key = rsa.key ecdsa.key
        TLS 1.2 or newer; TLS 1.2 suites ECDHE-ECDSA/ECDHE-RSA/RSA with
        AES-128/256-GCM; no TLS compression. SIGHUP re-reads them (and the
        credentials): new handshakes use the new files, open connections stay.
        Empty with profile 2 or 3: TLS is offloaded to a trusted proxy (see
        trusted_proxies), which must send X-Forwarded-Proto: https.
    """),
    "tls_key": Key(file_list, "", derived=True),
    "tls_ca": Key(text, "", derived=True, doc="""
        Profile 3: the CA certificate(s) (PEM) that client certificates must chain
        to. A missing, untrusted or expired client certificate fails the TLS
        handshake (a TLS alert; logged with the reason); one that does not match
        the identity gets HTTP 403 before the upgrade.
    """),
    "tls_crl": Key(file_list, "", derived=True, doc="""
        Profile 3 with tls_cert: certificate revocation lists (PEM or DER, one or
        more files, space-separated), each issued by a CA in tls_ca. A client
        certificate they revoke fails the TLS handshake (a TLS alert, no HTTP
        response), counted in ocppgw_handshakes_refused as "TLS revoked" and
        logged once per certificate with its serial. Re-read on SIGHUP and at the
        next handshake after a file changes; a connected charge point whose
        certificate a new list revokes is closed with 1008. A list that cannot be
        read on a reload keeps the previous lists (an error line).
    """),
    "tls_crl_expired": Key(choice("refuse", "warn"), "refuse", doc="""
        A CRL in tls_crl past its nextUpdate.
          refuse: the gateway does not start; on a reload the previous lists stay
                  and an error line says why.
          warn:   it is used anyway, with a warning; good certificates connect.
    """),
    "cert_identity": Key(choice("cn", "serial"), "cn", doc="""
        Profile 3: what the client certificate's subject CN must equal.
          cn:     the charge point identity from the URL, exactly.
          serial: the serial number recorded for the identity in [auth]
                  credentials (serial=S, set with ocppgw-passwd --serial), exactly
                  (A00.FR.405: the CN holds the charge point's serial number); an
                  identity without one is refused.
    """),
    "cpo_name": Key(text, "", optional=True, doc="""
        Profile 3: when set, the certificate's subject must have an O equal to it
        (A00.FR.404: the CPO name; 1.6 CpoName, 2.0.1 OrganizationName).
    """),
    "trusted_proxies": Key(networks, "", doc="""
        Networks (CIDR, space-separated) of reverse proxies in front of this
        listener. Only from these TCP peers are X-Forwarded-For (the remote
        address for logs, presence and rate limits), X-Forwarded-Proto and the
        client certificate header believed; from anyone else they are ignored.
    """),
    "client_cert_header": Key(header_name, DEFAULT_CERT_HEADER, doc="""
        The header in which a trusted TLS-offloading proxy forwards the client
        certificate: URL-encoded PEM (nginx: $ssl_client_escaped_cert). Profile 3
        checks (chain to tls_ca, validity, CN, O) apply to it.
    """),
    "default_version": Key(version, "", optional=True, doc="""
        The version spoken with a charge point that offers no subprotocol at all.
        Empty: such a charge point is refused with HTTP 400.
    """),
    "max_frame_size": Key(int_range(1024, 16 * 1024 * 1024), "65536", doc="""
        The largest WebSocket frame or message accepted; larger closes with 1009.
    """),
    "compression": Key(boolean, "on", doc="""
        on: permessage-deflate (RFC 7692) is accepted when a charge point offers it
        (2.0.1 Part 4 §3.3), with parameters that bound its memory: the gateway
        compresses each message on its own (server_no_context_takeover), asks the
        charge point to do the same (client_no_context_takeover) and, where it
        offers client_max_window_bits, to use compression_window_bits.  Its zlib state
        and buffers (~17 KiB with the defaults below) exist only while a
        message is compressed or inflated: between messages they are dropped.
        off: the extension is declined, and the faster uncompressed path taken.
        A compressed message inflating past max_frame_size closes with 1009.
    """),
    "compression_window_bits": Key(int_range(9, 15), "9", doc="""
        Base-2 logarithm of the deflate window, 9 to 15: the gateway's own
        (server_max_window_bits, announced) and the one asked of a charge point
        that offers client_max_window_bits.  Costs, while a message is in flight,
        about 4 x 2^bits bytes for the gateway's compressor and 2^bits for its
        decompressor, beyond ~13 KiB of zlib state: 9 ~ 2.5 KiB, 15 (zlib's
        default) ~ 160 KiB.  OCPP messages are small: a larger window saves
        little.  Above 9, a charge point that offered a smaller
        client_max_window_bits fails the handshake (its offered value is not
        passed on by the WebSocket library): keep 9 unless measured.
    """),
    "compression_mem_level": Key(int_range(1, 9), "1", doc="""
        zlib's memory level of the gateway's compressor, 1 to 9: its hash table
        and buffers cost about 2^(level + 9) bytes (1: 1 KiB; zlib's default 8:
        128 KiB) while a message is compressed; higher compresses a little better
        and faster on large messages.
    """),
    "max_message_rate": Key(int_range(0, 1_000_000), str(DEFAULT_RATE), doc="""
        Messages per second one charge point may send (0: no limit), and how many
        beyond that at once (a token bucket).  A CALL beyond them gets a CALLERROR
        GenericError naming the limit and is not published; other frames beyond
        them are dropped and counted; a connection above ten times the rate for
        10 s is closed with 1008.  Never refused: an answer to the gateway's CALL
        in flight (or to one that timed out).  Past the limit, StopTransaction,
        TransactionEvent with eventType Ended, SecurityEventNotification and
        SignedFirmwareStatusNotification (where the version has them) have their
        own bucket of twice max_message_rate and max_message_burst.
    """),
    "max_message_burst": Key(int_range(1, 1_000_000), str(DEFAULT_BURST)),
    "max_handshake_rate": Key(int_range(0, 1_000_000), str(model.DEFAULT_HANDSHAKE_RATE), doc="""
        Handshakes per second this listener admits (0: no limit), and how many
        beyond that at once (a token bucket): a reconnect storm is let in at the
        rate the gateway serves while its connected charge points keep their
        latency.  A handshake beyond them gets HTTP 503 with a Retry-After
        (seconds, jittered: the retries of a storm come back spread at the rate)
        before its identity or credentials are looked at, on a tcp: endpoint
        without making it a Twisted transport; on a TLS listener the TLS
        handshake, which carries the request, has happened by then.  A
        charge point under the rate never gets a 503.  Counted in
        ocppgw_handshakes_throttled_total.  With workers = N each worker
        admits 1/N of both.  Defaults measured: docs/performance.md.
    """),
    "max_handshake_burst": Key(int_range(1, 1_000_000), str(model.DEFAULT_HANDSHAKE_BURST)),
    "handshake_timeout": Key(seconds(), "10", doc="""
        Seconds a client has to complete the HTTP upgrade.
    """),
    "ping_interval": Key(seconds(allow_zero=True), "60", doc="""
        Seconds between WebSocket pings to each charge point; 0: no pings.
    """),
    "pong_timeout": Key(seconds(), "30", doc="""
        Seconds to wait for the pong; none: the connection is closed and the
        charge point is marked offline.
    """),
    "forward": Key(text, "", optional=True, doc="""
        Empty: MQTT mode. NAME: forward mode, this listener's charge points are
        relayed to the central system of [forward:NAME] (docs/forward.md).
    """),
})

AUTH = Section(model.LoginLimits, keys={
    "credentials": Key(text, "", derived=True, doc="""
        The credentials file (salted hashes), managed with ocppgw-passwd.
        Required when a listener has security_profile 1 or 2, or cert_identity =
        serial; with it, every listener refuses identities registered at a higher
        security profile than its own. Each load (start, SIGHUP, a change on
        disk) logs how many entries are weak: passwords outside 16-40 characters
        that ocppgw-passwd stored only with --weak, for legacy chargers.
    """),
    "http_url": Key(text, "", derived=True, doc="""
        Empty: off. Else the operator's authentication service (http:// or
        https://): every handshake of a profile 1, 2 or 3 listener that passed
        the gateway's own checks (TLS, rate limits, Basic header present, the
        client certificate's chain and subject) is POSTed there as JSON and
        its answer {"result": "allow" | "deny", "versions": [...], "reason"}
        decides; the credentials file is then consulted only for
        http_on_error = file (and for cert_identity = serial and the no-
        downgrade rule). Profile 0 listeners never ask. The request and
        answer are described in docs/authentication.md ("HTTP authentication
        service").
    """),
    "http_timeout": Key(seconds(), "2", derived=True, doc="""
        Seconds to wait for the service's answer (connecting included).
    """),
    "http_cache": Key(seconds(allow_zero=True), "300", derived=True, doc="""
        Seconds an answer (allow or deny) is remembered per identity and
        credentials (password, or client certificate fingerprint: a cached
        allow never admits other credentials) and listener. 0: no cache.
        SIGHUP clears it.
        Concurrent handshakes of one identity share one request.
    """),
    "http_on_error": Key(choice("deny", "file"), "deny", derived=True, doc="""
        What a timeout, a failed connection, a non-2xx status or an unreadable
        answer means: deny (refused like a wrong password), or file (decided
        as without http_url: the credentials file for profiles 1 and 2, the
        certificate checks alone for profile 3).
    """),
    "http_headers": Key(text, "", derived=True, doc="""
        A file of extra request headers, one "Name: value" a line (# comments),
        for example a bearer token for the service; re-read on SIGHUP.
    """),
    "max_failures_per_address": Key(int_range(0), "20", field="per_address", doc="""
        Failed logins (wrong password or certificate) allowed per source address
        and per identity within failure_window seconds; beyond that, handshakes
        from that address or for that identity get HTTP 429 with Retry-After,
        before any password is checked, until the window lets one more through
        (a token bucket refilled over the window). 0: no limit.
    """),
    "max_failures_per_identity": Key(int_range(0), "10", field="per_identity"),
    "failure_window": Key(seconds(), "60", field="window"),
    "failure_table_size": Key(int_range(1), "100000", field="table_size", doc="""
        Addresses and identities remembered at most (each table); the least
        recently failing are forgotten first, so memory stays bounded.
    """),
})
# fmt: on
