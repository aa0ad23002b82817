"""The restart delay of the embedded broker and the workers, on a task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from ocppgw.restarts import RestartDelay


def test_quick_deaths_double_the_delay_up_to_the_most() -> None:
    """A child that dies at once waits first, then twice as long each time, at most ``most``."""
    clock = Clock()
    delays = RestartDelay(clock, first=0.5, most=3.0, healthy=60)
    waited = []
    for _ in range(5):
        delays.started()
        clock.advance(1)
        waited.append(delays.ended())
    assert waited == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_healthy_run_resets_the_delay() -> None:
    """After a run of at least ``healthy`` seconds the next wait is ``first`` again."""
    clock = Clock()
    delays = RestartDelay(clock, first=1.0, most=30.0, healthy=60)
    for _ in range(4):
        delays.started()
        delays.ended()
    delays.started()
    clock.advance(59)
    assert delays.ended() == 16.0  # not healthy yet: still doubling
    delays.started()
    clock.advance(60)
    assert delays.ended() == 1.0
    delays.started()
    assert delays.ended() == 2.0
