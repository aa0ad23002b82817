# -*- test-case-name: tests.unit.forward.test_relay -*-
"""
Stage: forward mode (issue 20), the gateway in front of an existing central
system.

A listener with ``forward = NAME`` hands each charge point it admits to the
:class:`~ocppgw.forward.forwarder.Forwarder` of ``[forward:NAME]``: during
the charge point's HTTP upgrade it opens the central system's WebSocket
(:mod:`~ocppgw.forward.upstream`, to the URL and with the Authorization of
:mod:`~ocppgw.forward.address`), and once both are open it relays every
frame both ways unchanged (:mod:`~ocppgw.forward.relay`), copying each to
the tap topic with its direction, peer and verdict
(:mod:`~ocppgw.forward.tap`, :mod:`~ocppgw.forward.verdicts`).

May import: the stages below the listener (not the listener itself, which
is handed the forwarder's methods), Autobahn's public client API and Twisted.
"""
