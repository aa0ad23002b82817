"""The optional speed-ups: when each runs, and that its public path answers the same."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from ocppgw import loop_fast, speedups
from ocppgw.admin import metrics_fast
from ocppgw.forward import upstream_fast
from ocppgw.mqtt import speedup as mqtt_speedup
from ocppgw.ocpp import jsontext, jsontext_fast
from tests.clocks import Clocks


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Verdicts made in a test are forgotten after it; the gateway's own are kept."""
    saved = dict(speedups._checked)
    speedups._checked.clear()
    yield
    speedups._checked.clear()
    speedups._checked.update(saved)


def test_off_in_the_environment(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """OCPPGW_SPEEDUPS=off: no speed-up runs, and its shape is not even looked at."""
    monkeypatch.setenv("OCPPGW_SPEEDUPS", "off")

    def shape() -> bool:
        raise AssertionError("looked at with speed-ups off")

    assert speedups.check("probe", "packaging", ">=0", shape) is False
    (verdict,) = speedups.speedups()
    assert (verdict.enabled, verdict.why) == (False, "OCPPGW_SPEEDUPS=off")


@pytest.mark.parametrize("value, wanted", [("off", False), ("OFF", False), ("0", False),
                                           ("no", False), ("false", False), ("on", True),
                                           ("", True), ("1", True), ("-other", True)])
def test_wanted(value: str, wanted: bool) -> None:
    """Only off, 0, no and false (any case) turn them all off."""
    assert speedups.wanted({"OCPPGW_SPEEDUPS": value}) is wanted


@pytest.mark.parametrize("value, wanted", [("-probe", False), ("-PROBE", False),
                                           ("-other,-probe", False), ("-other -probe", False),
                                           ("off", False), ("-other", True), ("probe", True),
                                           ("", True)])
def test_wanted_by_name(value: str, wanted: bool) -> None:
    """-NAME (any case, among others separated by commas or spaces) turns that one off."""
    assert speedups.wanted({"OCPPGW_SPEEDUPS": value}, "probe") is wanted


def test_one_off_by_name(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """OCPPGW_SPEEDUPS=-probe: that speed-up is off, unchecked, with why; another still runs."""
    monkeypatch.setenv("OCPPGW_SPEEDUPS", "-probe")

    def shape() -> bool:
        raise AssertionError("looked at while turned off")

    assert speedups.check("probe", "packaging", ">=0", shape) is False
    assert speedups.check("other", "packaging", ">=0", lambda: True) is True
    other, probe = speedups.speedups()
    assert (other.name, other.enabled) == ("other", True)
    assert (probe.enabled, probe.why) == (False, "OCPPGW_SPEEDUPS holds -probe")


def test_untested_version_steps_aside(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library version outside the tested range: off, naming the library, version and range;
    report() logs one line for it."""
    monkeypatch.delenv("OCPPGW_SPEEDUPS", raising=False)
    version = speedups.installed("packaging")
    assert speedups.check("probe", "packaging", "<1", lambda: True) is False
    assert speedups.check("fits", "packaging", ">=1", lambda: True) is True
    lines: list[str] = []
    speedups.report(lines.append)
    assert lines == [
        f"speed-up probe is off, the public path runs: packaging {version} "
        "is not a version it was tested with (<1)"
    ]


def test_wrong_shape_steps_aside(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shape check that fails or raises: off, saying why; a missing library too."""
    monkeypatch.delenv("OCPPGW_SPEEDUPS", raising=False)

    def broken() -> bool:
        raise AttributeError("no _value")

    assert speedups.check("a", "packaging", ">=1", lambda: False) is False
    assert speedups.check("b", "packaging", ">=1", broken) is False
    assert speedups.check("c", "no-such-distribution", ">=1", lambda: True) is False
    why = {s.name: s.why for s in speedups.speedups()}
    assert why["a"].endswith("lacks the private parts it needs")
    assert why["b"].endswith("(AttributeError: no _value)")
    assert why["c"] == (
        "no-such-distribution not installed is not a version it was tested with (>=1)"
    )


def test_the_gateway_speedups_run_here_unless_turned_off() -> None:
    """On this machine's locked versions every speed-up fits: each runs unless turned off."""
    # Importing these checks autobahn_frames and automat_index.
    import ocppgw.listener.factory
    import ocppgw.session.lifecycle  # noqa: F401

    metrics_fast.enabled()  # checked when the first child is counted
    mqtt_speedup.fast_driver()  # checked when the first MQTT client is built
    loop_fast.made()  # checked when the global reactor is installed
    upstream_fast.protocol()  # checked when a [forward:NAME] is set up
    names = {s.name: s.enabled for s in speedups.speedups()}
    assert {
        "json_encoder",
        "prometheus_values",
        "automat_index",
        "autobahn_frames",
        "autobahn_client_frames",
        "paho_internals",
        "twisted_reactor",
    } <= names.keys()
    assert set(names.values()) == {speedups.wanted()}


@pytest.mark.parametrize("value", [{"a": [1, 2.5, "é", None, True]}, [], "x\u2028y", 10**30,
                                   {"k": {"n": -0.0}}])
def test_json_encoder_writes_what_json_dumps_writes(value: object) -> None:
    """The C encoder built once writes the public path's text."""
    encoder = jsontext_fast._build(json.encoder.c_make_encoder)  # type: ignore[attr-defined]
    public = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert "".join(encoder(value, 0)) == public == jsontext.dumps(value)


def test_json_encoder_refuses_what_json_dumps_refuses() -> None:
    """Infinity is refused both ways (RFC 8259 §6)."""
    encoder = jsontext_fast._build(json.encoder.c_make_encoder)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        encoder(float("inf"), 0)
    with pytest.raises(ValueError):
        jsontext.dumps(float("inf"))


def test_prometheus_adder_counts_as_inc_and_observe() -> None:
    """Counting through the speed-up gives the samples inc() and observe() give."""

    def samples(direct: bool) -> dict[tuple[str, str | None], float]:
        registry = CollectorRegistry()
        counter = Counter("c", "", ["a"], registry=registry).labels("x")
        histogram = Histogram("h", "", ["a"], buckets=(0.1, 1.0), registry=registry).labels("x")
        add = metrics_fast._incrementer(counter) if direct else counter.inc
        observe = metrics_fast._observer(histogram) if direct else histogram.observe
        assert add is not None and observe is not None
        for amount in (1, 2.5):
            add(amount)
        for amount in (0.05, 0.1, 0.5, 7):
            observe(amount)
        return {(s.name, s.labels.get("le")): s.value for m in registry.collect()
                for s in m.samples if not s.name.endswith("_created")}

    assert samples(direct=True) == samples(direct=False)


def test_paho_internals_steps_aside_for_a_paho_it_does_not_fit(
    fresh: None, monkeypatch: pytest.MonkeyPatch, clocks: Clocks
) -> None:
    """
    A paho without one of the private methods the speed-up overrides: the MQTT
    client is built on the public driver, and one start-up line names the
    speed-up and paho's version.
    """
    import paho.mqtt.client as paho

    from ocppgw.config import parse
    from ocppgw.mqtt.client import MQTTClient
    from ocppgw.mqtt.driver import Driver

    monkeypatch.delenv("OCPPGW_SPEEDUPS", raising=False)
    monkeypatch.delattr(paho.Client, "_packet_read")
    config = parse("[listener:ws]\nendpoint = tcp:0\n").mqtt
    client = MQTTClient(config, clocks.new())
    assert type(client._driver) is Driver
    lines: list[str] = []
    speedups.report(lines.append)
    version = speedups.installed("paho-mqtt")
    assert lines == [
        f"speed-up paho_internals is off, the public path runs: paho-mqtt {version} "
        "lacks the private parts it needs"
    ]


def test_paho_internals_runs_on_the_paho_it_was_checked_with(
    fresh: None, monkeypatch: pytest.MonkeyPatch, clocks: Clocks
) -> None:
    """
    The paho the lock (and make test-oldest) installs is one the speed-up was
    checked against and fits; wanted, the client gets the speed-up's driver.
    A lock moved to a paho outside TESTED fails here, until the speed-up is
    checked against it (or TESTED says it was).
    """
    from ocppgw.config import parse
    from ocppgw.mqtt.client import MQTTClient

    monkeypatch.delenv("OCPPGW_SPEEDUPS", raising=False)
    from packaging.specifiers import SpecifierSet

    installed = speedups.installed("paho-mqtt")
    assert installed in SpecifierSet(mqtt_speedup.TESTED), (installed, mqtt_speedup.TESTED)
    assert mqtt_speedup.fits(), f"paho-mqtt {installed} lacks what the speed-up uses"
    client = MQTTClient(parse("[listener:ws]\nendpoint = tcp:0\n").mqtt, clocks.new())
    assert type(client._driver).__name__ == "FastDriver"


def test_a_word_that_means_nothing_is_named(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """report() names each word of OCPPGW_SPEEDUPS that is neither on/off nor -NAME of one."""
    monkeypatch.delenv("OCPPGW_SPEEDUPS", raising=False)
    speedups.check("probe", "packaging", ">=0", lambda: True)
    lines: list[str] = []
    speedups.report(lines.append, {"OCPPGW_SPEEDUPS": "-probe, -nosuch, of, ON"})
    assert lines == [
        "OCPPGW_SPEEDUPS: '-nosuch' means nothing here and is ignored; use off, or -NAME "
        "with NAME one of probe",
        "OCPPGW_SPEEDUPS: 'of' means nothing here and is ignored; use off, or -NAME "
        "with NAME one of probe",
    ]
