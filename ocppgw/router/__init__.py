"""
Stage: the router, between the sessions and the MQTT client.

Topic templates (:mod:`ocppgw.router.topics`), the codecs that turn envelopes
into MQTT payloads and back (:mod:`ocppgw.wire`: json, protobuf,
raw), and the routing itself (:mod:`ocppgw.router.routing`): which topic an
envelope goes to, which session a downstream message is for, presence and
takeover across instances, and the answer to what cannot be delivered.

May import: :mod:`ocppgw.session`, :mod:`ocppgw.interfaces`,
:mod:`ocppgw.ocpp`; the configuration's types for the type checker only.  It
reaches the broker through :class:`~ocppgw.interfaces.IMQTTClient`, never
paho.  The codecs know no topic.
"""
