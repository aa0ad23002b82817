"""
The ``twistd ocppgw`` plugin, and the ``ocppgw`` reactor (``--reactor=ocppgw``,
what the supervisor gives its workers); modules are named by string so --help
never breaks.
"""

from twisted.application.reactors import Reactor
from twisted.application.service import ServiceMaker

ocppgw = ServiceMaker(
    "ocppgw",
    "ocppgw.tap",
    "OCPP-J gateway bridging charge points (1.6, 2.0.1, 2.1) to MQTT",
    "ocppgw",
)

ocppgw_reactor = Reactor(
    "ocppgw",
    "ocppgw.loop",
    "epoll, without a log context per event and with fewer system calls per write "
    "(the gateway's default)",
)
