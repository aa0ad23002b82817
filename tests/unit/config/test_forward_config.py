"""[forward:NAME] and [listener:NAME] forward: forward mode's configuration (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocppgw.config import ConfigError, parse

LISTENER = "[listener:ws]\nendpoint = tcp:8080\nforward = csms\n"
FORWARD = "[forward:csms]\nurl = wss://csms.example.com/ocpp/${cid}\n"


def test_defaults() -> None:
    """
    A forward section with only a url: passthrough auth, the tap on
    ocpp/tap/${cid} in JSON, observe, close, 10 s.
    """
    config = parse(LISTENER + FORWARD)
    (forward,) = config.forwards
    assert config.listeners[0].forward == "csms"
    assert forward.name == "csms"
    assert forward.url == "wss://csms.example.com/ocpp/${cid}"
    assert forward.auth == "passthrough"
    assert (forward.allow_plain_auth, forward.credentials) == (False, None)
    assert (forward.tls_ca, forward.tls_cert, forward.tls_key) == (None, None, None)
    assert (forward.mirrors, forward.mirror_calls) == ((), ())
    assert forward.tap_topic is not None and forward.tap_topic.text == "ocpp/tap/${cid}"
    assert forward.tap_codec == "json"
    assert (forward.validation, forward.on_csms_down) == ("observe", "close")
    assert forward.connect_timeout == 10.0


def test_mirrors_and_the_actions_they_may_send() -> None:
    """mirrors: URLs with ${cid}; mirror_calls: refuse (none), or the Actions listed."""
    text = LISTENER + FORWARD + "mirrors = ws://a/${cid} wss://b:9/x/${cid}\n"
    (forward,) = parse(text).forwards
    assert forward.mirrors == ("ws://a/${cid}", "wss://b:9/x/${cid}")
    assert forward.mirror_calls == ()
    (forward,) = parse(text + "mirror_calls = GetConfiguration Reset\n").forwards
    assert forward.mirror_calls == ("GetConfiguration", "Reset")


def test_a_listener_without_forward_is_in_mqtt_mode() -> None:
    """forward left out: the listener's forward is None (MQTT mode); no forward section needed."""
    config = parse("[listener:ws]\nendpoint = tcp:8080\n")
    assert config.listeners[0].forward is None
    assert config.forwards == ()


def test_files_are_resolved_and_the_tap_may_be_off(tmp_path: Path) -> None:
    """Relative file names are relative to the INI's directory; an empty tap_topic is no tap."""
    for name in ("ca.pem", "cert.pem", "key.pem", "users"):
        (tmp_path / name).write_text("x")
    text = LISTENER + FORWARD + (
        "auth = credentials\ncredentials = users\ntls_ca = ca.pem\n"
        "tls_cert = cert.pem\ntls_key = key.pem\ntap_topic =\ntap_codec = raw\n"
    )
    from ocppgw.config.parsing import parse as parse_in

    (forward,) = parse_in(text, base_dir=str(tmp_path)).forwards
    assert forward.credentials == str(tmp_path / "users")
    assert forward.tls_ca == str(tmp_path / "ca.pem")
    assert forward.tls_cert == str(tmp_path / "cert.pem")
    assert forward.tls_key == str(tmp_path / "key.pem")
    assert forward.tap_topic is None
    assert forward.tap_codec == "raw"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            LISTENER.replace("csms", "other") + FORWARD,
            "[listener:ws] forward: no [forward:other] section (forward sections: csms)",
        ),
        (LISTENER, "[listener:ws] forward: no [forward:csms] section (forward sections: none)"),
        (LISTENER + "[forward:csms]\n", "[forward:csms] url: required key is missing"),
        (
            LISTENER + "[forward:csms]\nurl = https://h/ocpp/${cid}\n",
            "[forward:csms] url: must be ws://HOST/... or wss://HOST/...",
        ),
        (
            LISTENER + "[forward:csms]\nurl = ws://h/ocpp\n",
            "[forward:csms] url: must hold ${cid} once, in its path",
        ),
        (LISTENER + "[forward:csms]\nurl = ws://h:99999/${cid}\n", "[forward:csms] url: not a URL"),
        (
            LISTENER + FORWARD + "auth = basic\n",
            "[forward:csms] auth: must be one of passthrough, none, credentials",
        ),
        (
            LISTENER + FORWARD + "auth = credentials\n",
            "[forward:csms] credentials: required with auth = credentials",
        ),
        (
            LISTENER + FORWARD + "credentials = /nonexistent/users\n",
            "[forward:csms] credentials: no such file: /nonexistent/users",
        ),
        (LISTENER + FORWARD + "tap_codec = xml\n", "[forward:csms] tap_codec: unknown codec"),
        (LISTENER + FORWARD + "tap_topic = ocpp/${nope}\n", "[forward:csms] tap_topic:"),
        (LISTENER + FORWARD + "connect_timeout = 0\n", "[forward:csms] connect_timeout:"),
        (
            LISTENER + FORWARD + "mirrors = ws://m/ocpp\n",
            "[forward:csms] mirrors: must hold ${cid} once, in its path",
        ),
        (
            LISTENER + FORWARD + "mirror_calls = GetConfiguration\n",
            "[forward:csms] mirror_calls: Actions listed, but no mirrors",
        ),
        (
            LISTENER + FORWARD + "mirrors = ws://m/${cid}\nmirror_calls = refuse Reset\n",
            "[forward:csms] mirror_calls: refuse, or a space-separated list of Actions",
        ),
        (LISTENER + FORWARD + "nonsense = 1\n", "[forward:csms] nonsense: unknown key"),
    ],
)
def test_bad_values(text: str, message: str) -> None:
    """Each bad section, reference, URL or file stops the start: one line naming section and key."""
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_tls_files_need_wss(tmp_path: Path) -> None:
    """tls_ca over a ws:// url is an error (it would never be used)."""
    (tmp_path / "ca.pem").write_text("x")
    text = LISTENER + "[forward:csms]\nurl = ws://h/${cid}\ntls_ca = ca.pem\n"
    from ocppgw.config.parsing import parse as parse_in

    only = r"^\[forward:csms\] tls_ca, tls_cert: only with a wss:// url$"
    with pytest.raises(ConfigError, match=only):
        parse_in(text, base_dir=str(tmp_path))
