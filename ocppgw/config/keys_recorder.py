# -*- test-case-name: tests.unit.config.test_recorder_config -*-
"""The keys of ``[recorder]``: the flight recorder (issue 21)."""

from __future__ import annotations

from ocppgw.config import model
from ocppgw.config.declaration import Key, Section
from ocppgw.config.values import field_paths, int_range, seconds, size

# fmt: off
RECORDER = Section(model.RecorderConfig, keys={
    "per_station": Key(int_range(0, 100_000), "200", doc="""
        The flight recorder: the last frames of each charge point (WebSocket
        frames both ways, MQTT messages published and received for it), newest
        last, for GET /api/v1/chargepoints/{id}/messages and ocppgw-ctl
        messages. 0: off. It is not an archive: the tap or the MQTT topics are.
    """),
    "max_memory": Key(size, "64MiB", doc="""
        A hard budget for all histories together (bytes; KiB, MiB, GiB allowed):
        over it, the oldest frames of the largest histories are dropped first,
        and counted in ocppgw_recorder_dropped_total; what they held is given
        back to the system (glibc's malloc_trim, at most once a second and 1%
        of the time), so the gateway's RSS grows by the budget, not by what
        came and went.
    """),
    "keep": Key(seconds(allow_zero=True), "3600", doc="""
        Seconds a disconnected charge point's history is kept, from the
        disconnect; a reconnection within it continues the history.
    """),
    "redact": Key(field_paths, "idTag idToken.idToken", doc="""
        Payload fields whose string values are replaced by a keyed hash (h:...;
        the same value gives the same hash within one gateway run) before
        anything is stored: a name matches that key at any depth, a dotted
        path the last key inside objects under the earlier ones. What is
        relayed is never changed. Empty: nothing redacted.
    """),
})
# fmt: on
