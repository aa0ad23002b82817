# -*- test-case-name: tests.unit.session.test_lifecycle_fast,tests.unit.test_speedups -*-
"""
Speed-up ``automat_index``: look a lifecycle's transitions up in a dict.

automat scans its set of transitions, comparing tuples, for every input
(one ``from_backend`` for every downstream message).  The table is fixed
once built (automat: "it is immutable"), so an index answers as the scan
does; a pair it lacks still goes to automat, which raises
``NoTransition``.  The automaton is automat's private
``__automat_automaton__`` of the built class, whose ``outputForInput`` is
replaced; the public path is automat's own.
"""

from __future__ import annotations

from typing import Any

from ocppgw import speedups

#: The Automat versions whose built classes this was checked against.
TESTED = ">=24.8,<26"


def index(machine: object) -> bool:
    """Index the transitions of ``machine`` (what automat's builder built); False: left as built."""

    def shape() -> bool:
        automaton = machine.__automat_automaton__  # type: ignore[attr-defined]
        return callable(automaton.outputForInput) and bool(list(automaton.allTransitions()))

    if not speedups.check("automat_index", "automat", TESTED, shape):
        return False
    _indexed(machine.__automat_automaton__)  # type: ignore[attr-defined]
    return True


def _indexed(automaton: Any) -> None:
    table = {
        (state, symbol): (after, tuple(outputs))
        for state, symbol, after, outputs in automaton.allTransitions()
    }
    scan = automaton.outputForInput

    def outputForInput(state: Any, symbol: Any) -> tuple[Any, list[Any]]:
        found = table.get((state, symbol))
        if found is None:
            return scan(state, symbol)  # type: ignore[no-any-return]
        return found[0], list(found[1])

    automaton.outputForInput = outputForInput
