# -*- test-case-name: tests.unit.mqtt.speedup.test_shape,tests.unit.test_speedups -*-
"""
Speed-up ``paho_internals``: paho-mqtt driven through its private parts,
where profiling under load found its public path slow.

Every use of a private name of paho in the gateway is in this package, and
nowhere else.  It replaces, for a client built while it fits:

- paho's per-byte reads and one packet per ``loop_read``: large reads, every
  whole packet handled in one reactor turn, QoS 0 and 1 PUBLISHes and plain
  PUBACKs parsed without paho's message objects (:mod:`.reads`: paho's
  ``_packet_read``, ``_sock_recv``, ``_handle_publish``, ``_handle_pubackcomp``,
  ``_in_packet`` and ``paho.mqtt._packet``);
- one ``send`` per packet: what a turn queued in one ``send`` (:mod:`.writes`:
  ``_packet_queue``, ``_packet_write``, ``_out_packet``);
- paho's ``MQTTMessage``, ``MQTTMessageInfo`` and two locks per QoS 1
  publish: packets of our own, with paho's packet-id counter (:mod:`.window`:
  ``_last_mid``, ``_packet_queue``);
- paho's walk of its outgoing messages after every PUBACK
  (``_update_inflight``), skipped while nothing waits behind the window;
- ``reconnect()`` in a thread: the socket opened, and the TLS handshake
  done, on the reactor (:mod:`.connect`), and handed to paho
  (``_create_socket``); a connection ended at once (``_sock_close``,
  ``_loop_rc_handle``).

It was checked (its unit tests in ``tests/unit/mqtt/speedup`` and the MQTT
integration tests) against paho-mqtt 2.2.0, the version the gateway's lock
file installs; :data:`TESTED` admits the 2.2 series.  Elsewhere, or with
``OCPPGW_SPEEDUPS=off``, or where paho lacks one of those parts
(:func:`fits`), :func:`fast_driver` gives nothing and the client runs on the
public driver (:mod:`ocppgw.mqtt.driver`), with one start-up line saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocppgw import speedups

if TYPE_CHECKING:
    from ocppgw.mqtt.driver import Driver

#: The paho-mqtt versions whose private parts this was checked against.
TESTED = ">=2.2,<2.3"

#: Methods of paho's Client this overrides or calls.
_METHODS = (
    "_handle_publish",
    "_handle_pubackcomp",
    "_packet_read",
    "_packet_handle",
    "_sock_recv",
    "_sock_send",
    "_sock_close",
    "_packet_queue",
    "_packet_write",
    "_update_inflight",
    "_create_socket",
    "_loop_rc_handle",
    "_call_socket_register_write",
    "_do_on_publish",
    "_mid_generate",
    "_easy_log",
)
#: What paho keeps of a packet being read, and of one queued to write.
_IN_PACKET = {"command", "have_remaining", "remaining_count", "remaining_mult",
              "remaining_length", "packet", "to_process", "pos"}  # fmt: skip
_OUT_PACKET = {"command", "mid", "qos", "pos", "to_process", "packet", "info"}


def fits() -> bool:
    """paho's Client has the private parts this uses, and they behave as expected."""
    import paho.mqtt.client as paho
    from paho.mqtt import _packet
    from paho.mqtt.enums import CallbackAPIVersion

    if not all(callable(getattr(paho.Client, name, None)) for name in _METHODS):
        return False
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="shape")
    client.on_socket_register_write = lambda c, u, s: None
    last = client._last_mid
    # The packet-id counter the window shares, and the queue it writes to.
    if client._mid_generate() != last + 1 or client._last_mid != last + 1:
        return False
    client._packet_queue(0x40, b"\x40\x02\x00\x01", 1, 1)
    queued = list(client._out_packet)
    return (
        len(queued) == 1
        and _OUT_PACKET <= set(queued[0])
        and queued[0]["to_process"] == 4
        and _IN_PACKET <= set(client._in_packet)
        and isinstance(client._out_messages, dict)
        and isinstance(client._inflight_messages, int)
        and isinstance(client._manual_ack, bool)
        and hasattr(client, "_out_message_mutex")
        and hasattr(client, "_last_bytes_received")
        and hasattr(client, "_registered_write")
        and client._sock is None
        and _packet.decode_puback(0x40, b"\x00\x07", paho.MQTTv311).mid == 7
    )


def fast_driver() -> type[Driver] | None:
    """The speed-up's driver where it runs here (checked once), else None."""
    if not speedups.check("paho_internals", "paho-mqtt", TESTED, fits):
        return None
    from ocppgw.mqtt.speedup.driver import FastDriver

    return FastDriver


__all__ = ["TESTED", "fast_driver", "fits"]
