"""
Loaded at start-up by a gateway process whose PYTHONPATH begins with this
folder (tests/integration/test_public_paths.py): it records, in the file
named by ``OCPPGW_PRIVATE_TRAPS``, every private name of paho, Autobahn,
automat, json, prometheus-client and Twisted's reactor that code of
``ocppgw`` reads, sets or calls.  It writes one ``armed LIBRARY`` line for
each trap it set, so a test knows they were there.

Private here: a name with a leading underscore that the library's classes
(paho's ``Client``, Autobahn's ``WebSocketProtocol``, prometheus-client's
metrics and ``MutexValue``, Twisted's ``EPollReactor``) define or the
library's code sets, Autobahn's frame parser state (``data``,
``current_frame``, ...), any use of automat's ``Automaton`` (private:
``automat._core``, reached through ``__automat_automaton__``), and
``json.encoder.c_make_encoder`` called from outside ``json``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_LOG = os.environ.get("OCPPGW_PRIVATE_TRAPS", "")
_OURS = os.sep + "ocppgw" + os.sep


def _write(line: str) -> None:
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _caller(depth: int) -> str:
    return sys._getframe(depth).f_code.co_filename


def _trap_class(
    library: str, cls: type, everything: bool = False, state: frozenset[str] = frozenset()
) -> None:
    """
    Record ocppgw's uses of ``cls``'s private names: those the library's
    classes define, and those library code set first on an instance (a
    subclass's own private names, which ocppgw defines, are not the library's),
    and the undocumented ``state`` names.
    """
    get, set_ = cls.__getattribute__, cls.__setattr__
    home = os.path.dirname(sys.modules[cls.__module__.split(".")[0]].__file__ or "") + os.sep
    theirs: set[str] = set()

    def touched(name: str) -> None:
        if not (everything or name in state or (name[:1] == "_" and name[:2] != "__")):
            return
        where = _caller(3)
        if where.startswith(home):
            theirs.add(name)
        elif _OURS in where and (
            everything or name in state or name in theirs or hasattr(cls, name)
        ):
            _write(f"touched {library} {cls.__name__}.{name} from {where}")

    def getattribute(self: Any, name: str) -> Any:
        touched(name)
        return get(self, name)

    def setattr_(self: Any, name: str, value: Any) -> None:
        touched(name)
        set_(self, name, value)

    cls.__getattribute__ = getattribute  # type: ignore[method-assign]
    cls.__setattr__ = setattr_  # type: ignore[method-assign]
    _write(f"armed {library} {cls.__name__}")


def _trap_json() -> None:
    import json.encoder

    make = json.encoder.c_make_encoder

    def c_make_encoder(*args: Any) -> Any:
        if _OURS in (where := _caller(2)):
            _write(f"touched json c_make_encoder from {where}")
        return make(*args)  # type: ignore[misc]

    json.encoder.c_make_encoder = c_make_encoder  # type: ignore[assignment]
    _write("armed json c_make_encoder")


def _arm() -> None:
    import automat._core
    import paho.mqtt.client
    import prometheus_client.metrics
    import prometheus_client.values
    from autobahn.websocket.protocol import WebSocketProtocol
    from twisted.internet.epollreactor import EPollReactor

    _trap_class("paho", paho.mqtt.client.Client)
    # The frame parser's state, undocumented though not underscored.
    parser = frozenset({"data", "current_frame", "inside_message", "send_queue"})
    _trap_class("autobahn", WebSocketProtocol, state=parser)
    _trap_class("automat", automat._core.Automaton, everything=True)
    _trap_class("prometheus-client", prometheus_client.metrics.MetricWrapperBase)
    _trap_class("prometheus-client", prometheus_client.values.MutexValue)
    _trap_json()
    _trap_class("twisted", EPollReactor)


if _LOG:
    _arm()
