# -*- test-case-name: tests.unit.config.test_forward_config -*-
"""The keys of ``[forward:NAME]``: forward mode, before an existing central system (issue 20)."""

from __future__ import annotations

from ocppgw.config import model
from ocppgw.config.declaration import Key, Section
from ocppgw.config.values import boolean, choice, nonempty, nonempty_codec, seconds, text

# fmt: off
FORWARD = Section(model.ForwardConfig, suffix="csms", commented=True, doc="""
    Forward mode (docs/forward.md): a listener with forward = NAME relays its
    charge points, frame for frame, to an existing central system, and copies
    every frame to tap_topic. Each [forward:NAME] is one central system.
""", keys={
    "url": Key(nonempty, None, derived=True, example="wss://csms.example.com/ocpp/${cid}", doc="""
        The central system's WebSocket URL (ws:// or wss://, required), with
        ${cid}: the charge point's identity, its RFC 3986 unreserved characters
        (A-Z a-z 0-9 - . _ ~) kept and every other byte percent-encoded.
    """),
    "auth": Key(choice("passthrough", "none", "credentials"), "passthrough", doc="""
        What the gateway sends the central system as Authorization:
          passthrough: the charge point's own header (over ws:// only with
                       allow_plain_auth);
          none:        no header;
          credentials: HTTP Basic with the user and password the credentials
                       file gives for the identity (none for one not listed).
    """),
    "allow_plain_auth": Key(boolean, "false", doc="""
        true: forward a charge point's Authorization header (or the credentials)
        over a plain ws:// url too, where anyone on the path can read it (said
        once at start). false: over ws:// no Authorization header is sent.
    """),
    "credentials": Key(text, "", derived=True, doc="""
        With auth = credentials: a file of "identity user password" lines
        (# comments, blank lines ignored), read at start and on SIGHUP (a
        file that cannot be used then is refused and the old one kept).
    """),
    "tls_ca": Key(text, "", derived=True, doc="""
        wss://: the CA bundle (PEM) the central system's certificate must chain
        to; empty: the system's CAs. The certificate is always verified,
        against the url's host name; one that does not verify is a 502 to the
        charge point.
    """),
    "tls_cert": Key(text, "", derived=True, doc="""
        wss://: the gateway's client certificate towards the central system
        (PEM), with its private key in tls_key; empty: none.
    """),
    "tls_key": Key(text, "", derived=True),
    "mirrors": Key(text, "", derived=True, doc="""
        Space-separated ws:// or wss:// URLs, with ${cid} as in url: read-only
        copies of the charge point's CALLs, each over its own connection per
        charge point (no Authorization; tls_ca, tls_cert and tls_key apply),
        reconnected when lost; their answers go only to the tap
        (docs/forward.md). Empty: none.
    """),
    "mirror_calls": Key(text, "refuse", derived=True, doc="""
        refuse: a mirror's CALLs to the charge point are answered with a
        CALLERROR (NotSupported); or a space-separated list of the Actions a
        mirror may send: they take their turn like a backend's, and the charge
        point's answer goes back to that mirror.
    """),
    "tap_topic": Key(text, "ocpp/tap/${cid}", derived=True, doc="""
        Every frame both ways (and those of mirrors and MQTT backends) is
        published here, in order per charge point, with Direction (ChargePoint,
        CSMS, Mirror, Backend), Peer and Verdict. Empty: no tap.
    """),
    "tap_codec": Key(nonempty_codec, "json", doc="""
        The tap's codec: json, protobuf or raw, as for the other topics.
    """),
    "validation": Key(choice("observe", "enforce"), "observe", doc="""
        observe: every frame is relayed as it is, its verdict recorded in the
        tap; enforce: MQTT mode's OCPP-J rules on both sides (the framing, and
        the schemas of [validation] mode): a refused frame is not relayed and
        the gateway answers the CALLERROR of the rules (docs/forward.md).
    """),
    "on_csms_down": Key(choice("close", "hold"), "close", doc="""
        The central system's connection is lost: close the charge point's with
        1012 (service restart), so that it reconnects and is relayed again; or
        hold it and reconnect upstream (1 s, doubling to 30 s between attempts),
        answering its CALLs with a CALLERROR (InternalError) meanwhile, each
        shown in the tap with that CALLERROR as its Verdict.
    """),
    "connect_timeout": Key(seconds(), "10", doc="""
        Seconds the central system has to accept the WebSocket connection
        (TCP, TLS and HTTP upgrade); after it the charge point gets 503. One
        that refuses the TCP connection, or whose certificate does not verify:
        502. Its own refusal (401, 404, ...) is the charge point's status.
    """),
})
# fmt: on
