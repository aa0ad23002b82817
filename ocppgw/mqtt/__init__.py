"""
Stage: MQTT, the last before the broker.

paho-mqtt driven by the reactor (:mod:`ocppgw.mqtt.client`, which implements
:class:`~ocppgw.interfaces.IMQTTClient`), through paho's documented API
(:mod:`ocppgw.mqtt.driver`) or, where paho is a version it was checked
against, the speed-up :mod:`ocppgw.mqtt.speedup` (the only package that
uses paho's private names); its TLS context (:mod:`ocppgw.mqtt.tls`), and the
embedded, supervised mosquitto (:mod:`ocppgw.mqtt.broker`).

May import: :mod:`ocppgw.interfaces`, :mod:`ocppgw.ocpp`; the configuration's
types for the type checker only.  Knows no session, topic template or codec.
"""
