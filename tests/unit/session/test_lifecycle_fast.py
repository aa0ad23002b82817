"""
The speed-up ``automat_index`` (ocppgw/session/lifecycle_fast.py): the only
unit test that reads automat's private automaton, since that is what it
checks against.
"""

from __future__ import annotations

from typing import Any


def test_indexed_transitions_answer_as_automat_does() -> None:
    """
    For every state and every input, the lifecycle's indexed lookup gives
    automat's own answer (its linear scan): the same next state and outputs,
    or the same NoTransition.
    """
    from automat import NoTransition
    from automat._core import Automaton

    from ocppgw.session.lifecycle import LifecycleMachine

    automaton = LifecycleMachine.__automat_automaton__

    def outcome(lookup: Any, state: Any, symbol: Any) -> object:
        try:
            after, outputs = lookup(state, symbol)
        except NoTransition:
            return "NoTransition"
        return after, list(outputs)

    pairs = [(s, i) for s in automaton.states() for i in automaton.inputAlphabet()]
    pairs.append((next(iter(automaton.states())), "no such input"))
    assert len(pairs) > 40
    for state, symbol in pairs:
        ours = outcome(automaton.outputForInput, state, symbol)
        theirs = outcome(lambda s, i: Automaton.outputForInput(automaton, s, i), state, symbol)
        assert ours == theirs, (state, symbol)
