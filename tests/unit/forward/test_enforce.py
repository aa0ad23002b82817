"""validation = enforce: the CALLERROR in place of a refused frame (ocppgw.forward.enforce)."""

from __future__ import annotations

import json

from ocppgw.forward.enforce import TO_RECEIVER, TO_SENDER, refusal
from ocppgw.forward.verdicts import Verdicts
from ocppgw.ocpp.validation import Validator

VALIDATE = Validator().validate


def test_a_refused_call_is_answered_to_its_sender() -> None:
    """An Authorize without idTag: a CALLERROR with its UniqueId, back to the sender."""
    text = '[2,"a1","Authorize",{}]'
    message, verdict = Verdicts("ocpp1.6", VALIDATE).judge(text, True)
    found = refusal(text, "ocpp1.6", message, verdict)
    assert found is not None
    error, to = found
    assert to == TO_SENDER
    frame = json.loads(error)
    assert frame[:3] == [4, "a1", verdict["ErrorCode"]]  # type: ignore[index]


def test_an_unreadable_frame_is_answered_with_id_minus_one_in_2x() -> None:
    """No UniqueId can be read (2.0.1 Part 4 §4.2.3): -1, RpcFrameworkError, to the sender."""
    message, verdict = Verdicts("ocpp2.0.1", None).judge("[2,", True)
    found = refusal("[2,", "ocpp2.0.1", message, verdict)
    assert found is not None
    error, to = found
    assert to == TO_SENDER
    assert json.loads(error)[:3] == [4, "-1", "RpcFrameworkError"]


def test_a_refused_answer_goes_to_the_side_whose_call_it_answers() -> None:
    """A Heartbeat CALLRESULT without currentTime: the CALL's sender gets a CALLERROR instead."""
    verdicts = Verdicts("ocpp2.0.1", VALIDATE)
    verdicts.judge('[2,"h1","Heartbeat",{}]', True)
    message, verdict = verdicts.judge('[3,"h1",{}]', False)
    found = refusal('[3,"h1",{}]', "ocpp2.0.1", message, verdict)
    assert found is not None
    error, to = found
    assert to == TO_RECEIVER
    assert json.loads(error)[:2] == [4, "h1"]


def test_a_refused_send_is_answered_to_nobody() -> None:
    """OCPP 2.1 SEND is never answered: the refused one is dropped."""
    verdicts = Verdicts("ocpp2.1", VALIDATE)
    text = '[6,"s1","NotifyPeriodicEventStream",{}]'
    message, verdict = verdicts.judge(text, True)
    assert verdict != "accepted"
    assert refusal(text, "ocpp2.1", message, verdict) is None
