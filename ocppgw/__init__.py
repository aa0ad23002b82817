# -*- test-case-name: tests.integration.test_packaging -*-
"""ocppgw: an OCPP-J gateway that bridges charge points to MQTT."""

__version__ = "0.1.0"
