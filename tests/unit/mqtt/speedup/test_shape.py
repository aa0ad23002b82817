"""
The speed-up paho_internals checks paho's shape before it runs (ocppgw.mqtt.speedup.fits):
every private method it overrides or calls, and the state it reads, behaving as it expects.
"""

from __future__ import annotations

import paho.mqtt.client as paho
import pytest
from packaging.specifiers import SpecifierSet

from ocppgw import speedups
from ocppgw.mqtt import speedup


def test_the_installed_paho_fits_and_was_checked() -> None:
    """The paho-mqtt this project installs is one the speed-up was checked against, and fits."""
    assert speedups.installed("paho-mqtt") in SpecifierSet(speedup.TESTED)
    assert speedup.fits()


@pytest.mark.parametrize("name", ["_packet_read", "_create_socket", "_update_inflight"])
def test_a_missing_private_method_does_not_fit(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A paho without one of the methods the speed-up overrides does not fit."""
    monkeypatch.delattr(paho.Client, name)
    assert not speedup.fits()


def test_a_packet_id_counter_that_counts_otherwise_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """paho's counter of packet ids (shared with the speed-up's window) must count as it did."""
    monkeypatch.setattr(paho.Client, "_mid_generate", lambda self: 42)
    assert not speedup.fits()


def test_a_write_queue_of_another_shape_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """paho's write queue must hold the packet dictionaries the speed-up joins."""

    def queue(self: paho.Client, command: int, packet: bytes, mid: int, qos: int) -> None:
        self._out_packet.append((command, packet))  # type: ignore[arg-type]

    monkeypatch.setattr(paho.Client, "_packet_queue", queue)
    assert not speedup.fits()
