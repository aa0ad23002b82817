"""
Stage: the session, one per connected charge point.

The OCPP-J rules (correlation, one CALL in flight per direction, the
downstream queue, timeouts, validation, the answers to bad frames) and the
session's lifecycle, doing no I/O: the charge point is reached through
:class:`~ocppgw.interfaces.IChargePointConnection`, the backend through
:class:`~ocppgw.interfaces.IRouter`, time through an injected
``IReactorTime``.

May import: :mod:`ocppgw.interfaces`, :mod:`ocppgw.ocpp`, Twisted's time and
logging.  Never Autobahn or paho.
"""
