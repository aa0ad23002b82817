"""The ``twistd ocppgw`` plugin; the module is named by string so --help never breaks."""

from twisted.application.service import ServiceMaker

ocppgw = ServiceMaker(
    "ocppgw",
    "ocppgw.tap",
    "OCPP-J gateway bridging charge points (1.6, 2.0.1, 2.1) to MQTT",
    "ocppgw",
)
