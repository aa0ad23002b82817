# -*- test-case-name: tests.integration.test_packaging -*-
"""
``twistd ocppgw``: the command-line options and the service they build.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from ocppgw.config import ConfigError, load


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run the ocppgw OCPP-J gateway: charge points connect over WebSocket "
        "(OCPP 1.6J, 2.0.1, 2.1) and every message is bridged to MQTT. "
        "Every option of the INI file is documented in etc/ocppgw.ini."
    )
    optParameters = [
        ["config", "c", "etc/ocppgw.ini", "The INI configuration file."],
    ]

    def postOptions(self) -> None:
        try:
            self["parsed"] = load(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from ocppgw import workers
    from ocppgw.assemble import build

    config = options["parsed"]
    try:
        if workers.supervises(config):
            return workers.Supervisor(config, options["config"], reactor)
        service: Any = build(workers.as_run(config), reactor)
    except ConfigError as e:
        raise usage.UsageError(str(e)) from None
    return service  # type: ignore[no-any-return]
