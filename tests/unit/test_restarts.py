"""The restarts of the embedded broker and the workers, on a task.Clock."""

from __future__ import annotations

from ocppgw.restarts import Restarts
from tests.clocks import Clocks


def test_quick_deaths_double_the_delay_up_to_the_most(clocks: Clocks) -> None:
    """A child that dies at once waits first, then twice as long each time, at most ``most``."""
    clock = clocks.new()
    delays = Restarts(clock, first=0.5, most=3.0, healthy=60)
    waited = []
    for _ in range(5):
        delays.started()
        clock.advance(1)
        waited.append(delays.ended(lambda: None))
    assert waited == [0.5, 1.0, 2.0, 3.0, 3.0]
    delays.hold()  # the parent stops


def test_a_healthy_run_resets_the_delay(clocks: Clocks) -> None:
    """After a run of at least ``healthy`` seconds the next wait is ``first`` again."""
    clock = clocks.new()
    delays = Restarts(clock, first=1.0, most=30.0, healthy=60)
    for _ in range(4):
        delays.started()
        delays.ended(lambda: None)
    delays.started()
    clock.advance(59)
    assert delays.ended(lambda: None) == 16.0  # not healthy yet: still doubling
    delays.started()
    clock.advance(60)
    assert delays.ended(lambda: None) == 1.0
    delays.started()
    assert delays.ended(lambda: None) == 2.0
    delays.hold()  # the parent stops


def test_the_child_is_started_after_the_delay_unless_held(clocks: Clocks) -> None:
    """``ended`` starts the child again once its delay has passed; ``hold`` drops that start."""
    clock = clocks.new()
    started: list[int] = []
    restarts = Restarts(clock, first=1.0)
    restarts.started()
    assert restarts.ended(lambda: started.append(1)) == 1.0
    clock.advance(0.9)
    assert started == []
    clock.advance(0.1)
    assert started == [1]
    restarts.started()
    restarts.ended(lambda: started.append(2))
    restarts.hold()
    clock.advance(60)
    assert started == [1]
    assert clock.getDelayedCalls() == []
