# -*- test-case-name: tests.integration.test_packaging -*-
"""
``twistd ocppgw``: the command-line options and the service they build.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from ocppgw.config import ConfigError, load
from ocppgw.logs import Observed, observer_for, twistd_output

#: The configuration used when --config is not given, if it exists.
LOCAL_CONFIG = "etc/ocppgw.ini"


def default_config_path() -> str:
    """``etc/ocppgw.ini`` in a checkout, else the copy installed with the package."""
    if os.path.exists(LOCAL_CONFIG):
        return LOCAL_CONFIG
    return str(resources.files("ocppgw").joinpath("ocppgw.ini"))


def refusal(error: ConfigError) -> SystemExit:
    """
    What a configuration that cannot run ends the process with: its one line
    (naming the section, the key, the value and the cause) on stderr, exit
    status 1, and neither twistd's usage text (a ``usage.UsageError`` would
    print it above the line) nor a traceback.
    """
    return SystemExit(f"ocppgw: {error}")


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run the ocppgw OCPP-J gateway: charge points connect over WebSocket "
        "(OCPP 1.6J, 2.0.1, 2.1) and every message is bridged to MQTT. "
        "Every option of the INI file is documented in etc/ocppgw.ini."
    )
    optParameters = [
        [
            "config",
            "c",
            None,
            f"The INI configuration file (default: {LOCAL_CONFIG} if it exists, else the "
            "one shipped with the package; ocppgw-config prints it).",
        ],
    ]

    def postOptions(self) -> None:
        if self["config"] is None:
            self["config"] = default_config_path()
        try:
            self["parsed"] = load(self["config"])
        except ConfigError as e:
            raise refusal(e) from None


def makeService(options: Options) -> IService:
    from ocppgw import loop

    # Before the first import of the global reactor (twistd imports it only
    # after makeService), unless --reactor chose one.
    loop.install()
    from twisted.internet import reactor

    from ocppgw import workers
    from ocppgw.admin.fanout import FanoutService
    from ocppgw.assemble import operate

    # Once start-up is over: its objects are frozen out of the collector's
    # sight, and full collections of a large heap kept short (loop.Collector).
    reactor.callWhenRunning(loop.Collector(reactor).start)
    # The exit status is the stop's (0 when complete), not the signal's.
    loop.catch_stop_signals(reactor)
    config = options["parsed"]
    service: Any
    try:
        if workers.supervises(config):
            service = workers.Supervisor(config, options["config"], reactor)
            if config.admin.endpoint is not None:
                # Every admin route for all workers (ocppgw.admin.fanout).
                FanoutService(config, service.workers, reactor).setServiceParent(service)
        else:
            service = operate(workers.as_run(config), reactor)
            workers.watch_supervisor(reactor)  # a worker stops once its supervisor is gone
    except ConfigError as e:
        raise refusal(e) from None
    # A worker's log is twist's JSON to its supervisor, which writes it in
    # [gateway] log_format as its own (ocppgw.workers): no log file of its own.
    parent = None if workers.worker_index() is not None else getattr(options, "parent", None)
    out = twistd_output(parent)
    if out is not None:
        # twistd takes the application's log observer (AppLogger.start).
        service = Observed(service, observer_for(config.log_format, out))
    return service  # type: ignore[no-any-return]
