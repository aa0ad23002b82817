# -*- test-case-name: tests.unit.forward.test_enforce -*-
"""
``validation = enforce``: a frame from either side that MQTT mode's rules
refuse is not relayed; the gateway answers with the CALLERROR those rules
give (:mod:`~ocppgw.forward.verdicts`: the framing of OCPP-J 1.6 §4.1.3 /
2.0.1 Part 4 §4.1.3, the schemas of ``[validation] mode``):

- a refused CALL, or a frame that is no message at all, is answered to its
  sender (2.0.1 Part 4 §4.2.3: with UniqueId ``-1`` when none could be read);
- a refused answer (CALLRESULT, CALLERROR) is replaced by that CALLERROR
  towards the side whose CALL it answers, so that CALL is never left
  waiting for an answer that will not come;
- a refused SEND (2.1) is dropped: a SEND is never answered (2.1 Part 4 §4.2.5).
"""

from __future__ import annotations

from ocppgw.forward.verdicts import Verdict
from ocppgw.ocpp.messages import (
    CallError,
    FrameError,
    Message,
    MessageType,
    encode_frame,
    parse_frame,
)

#: The CALLERROR goes back to the frame's sender ...
TO_SENDER = True
#: ... or to its receiver, in place of the answer.
TO_RECEIVER = False

#: OCPP 2.0.1 Part 4 §4.2.3: ErrorDescription is at most 255 characters.
MAX_DESCRIPTION = 255


def refusal(
    text: str, version: str, message: Message | None, verdict: Verdict
) -> tuple[str, bool] | None:
    """
    The CALLERROR frame the gateway sends in place of the refused frame
    ``text``, and to whom (:data:`TO_SENDER` or :data:`TO_RECEIVER`); None
    for a refused SEND (nobody is answered).
    """
    if message is None:
        try:
            parse_frame(text, version)
        except FrameError as e:
            unique_id, kind = e.unique_id, e.message_type
        else:  # judged refused but readable: answered as a CALL
            unique_id, kind = "-1", None
    else:
        unique_id, kind = message.unique_id, int(message.message_type)
    if kind == MessageType.SEND:
        return None
    code = verdict["ErrorCode"] if isinstance(verdict, dict) else "GenericError"
    why = verdict["ErrorDescription"] if isinstance(verdict, dict) else ""
    frame = encode_frame(CallError(unique_id, code, why[:MAX_DESCRIPTION], {}))
    if kind is None or kind == MessageType.CALL:
        return frame, TO_SENDER
    return frame, TO_RECEIVER
