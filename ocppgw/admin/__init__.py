"""
Stage: operating the gateway, beside the flow: the admin HTTP API, the
Prometheus metrics and ``/healthz`` (:mod:`ocppgw.admin.service`,
:mod:`ocppgw.admin.api`), made from the gateway's events
(:class:`~ocppgw.interfaces.IGatewayEvents`, :mod:`ocppgw.admin.records`).

May import: :mod:`ocppgw.config`, :mod:`ocppgw.router`, :mod:`ocppgw.session`,
:mod:`ocppgw.interfaces`, :mod:`ocppgw.ocpp` (read-only queries of the
router's sessions and the MQTT client's state; a CALL is handed to a session
as the router hands it one), and the gateway service's types for the type
checker only.
"""
