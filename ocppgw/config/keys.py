# -*- test-case-name: tests.unit.config.test_declaration,tests.unit.config.test_config -*-
"""
Every section and key the gateway knows: :data:`SECTIONS`, in the order of the
reference file, whose opening comment is :data:`PREAMBLE`.

Each key is declared once, as a :class:`~ocppgw.config.declaration.Key` (in
:mod:`~ocppgw.config.keys_gateway` and :mod:`~ocppgw.config.keys_mqtt`); a key
or section not declared is an error in the file.
"""

from __future__ import annotations

from collections.abc import Mapping

from ocppgw.config.declaration import Key, Section
from ocppgw.config.keys_forward import FORWARD
from ocppgw.config.keys_gateway import AUTH, GATEWAY, LISTENER
from ocppgw.config.keys_mqtt import (
    ADMIN,
    DNSTREAM,
    LOCAL,
    MQTT,
    PRESENCE,
    UPSTREAM,
    UPSTREAM_ACTION,
    VALIDATION,
)
from ocppgw.config.keys_recorder import RECORDER

__all__ = ["PREAMBLE", "SECTIONS", "Key", "Section"]

#: The comment that opens the reference file.
PREAMBLE = """
ocppgw configuration.

Every key the gateway knows is listed here with its default; a key that is
commented out takes the default shown.  An unknown section or key, or a bad
value, stops the gateway at start with a message naming the section and key.
Durations are in seconds; sizes in bytes.  Relative file names are relative
to the directory of this file.

Topic templates take these placeholders:
  ${cid}      the charge point identity (from the URL)
  ${action}   the OCPP Action (for results and errors: the Action of their CALL)
  ${type}     the MessageTypeId: 2 CALL, 3 CALLRESULT, 4 CALLERROR,
              5 CALLRESULTERROR, 6 SEND
  ${id}       the UniqueId (message id)
  ${version}  the negotiated subprotocol: ocpp1.6, ocpp2.0.1 or ocpp2.1
  ${gateway}  [gateway] id
A value never changes the shape of a topic: / + # % and NUL in a value are
percent-encoded (a/b -> a%2Fb).

Each topic has a codec, its wire profile: json (the JSON envelope), raw (the
OCPP-J frame itself) or protobuf (the Chargerlink Message wrapper).
"""

#: Every section, in the order of the reference file.  A section name ending in
#: ``:`` takes a suffix (``[listener:NAME]``, ``[upstream:ACTION]``).
SECTIONS: Mapping[str, Section] = {
    "gateway": GATEWAY,
    "listener:": LISTENER,
    "auth": AUTH,
    "mqtt": MQTT,
    "upstream": UPSTREAM,
    "upstream:": UPSTREAM_ACTION,
    "dnstream": DNSTREAM,
    "validation": VALIDATION,
    "local": LOCAL,
    "presence": PRESENCE,
    "admin": ADMIN,
    "recorder": RECORDER,
    "forward:": FORWARD,
}
