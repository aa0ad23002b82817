"""
``[mqtt]`` for the embedded broker (issue 24): anonymous only on loopback,
logins for it from username/password and embedded_users.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ocppgw.config import ConfigError, parse

MINIMAL = "[listener:ws]\nendpoint = tcp:8080\n[mqtt]\nbroker = embedded\n"
LOGIN = "username = ocppgw\npassword = gateway-password\n"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_may_stay_anonymous(host: str) -> None:
    """A loopback embedded_host needs no logins: the broker stays anonymous there."""
    config = parse(MINIMAL + f"embedded_host = {host}\n")
    assert (config.mqtt.host, config.mqtt.username, config.mqtt.embedded_users) == (
        host, None, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "broker.example"])
def test_non_loopback_without_login_is_refused(host: str) -> None:
    """Any other embedded_host without username and password: one line naming the key."""
    with pytest.raises(ConfigError) as e:
        parse(MINIMAL + f"embedded_host = {host}\n")
    message = str(e.value)
    assert message.startswith(f"[mqtt] embedded_host: {host} is not a loopback address")
    assert "username" in message and "embedded_users" in message and "\n" not in message


def test_non_loopback_with_login_and_users(tmp_path: Path) -> None:
    """With the gateway's login a non-loopback host is accepted; embedded_users is file-relative."""
    (tmp_path / "users").write_text("csms backend-password\n")
    config = parse(
        MINIMAL + "embedded_host = 0.0.0.0\n" + LOGIN + "embedded_users = users\n",
        base_dir=str(tmp_path),
    )
    assert config.mqtt.embedded_users == str(tmp_path / "users")
    assert (config.mqtt.username, config.mqtt.password) == ("ocppgw", "gateway-password")


@pytest.mark.parametrize(
    "text, message",
    [
        (MINIMAL + "embedded_users = users\n", r"^\[mqtt\] embedded_users: needs \[mqtt\] user"),
        (MINIMAL + LOGIN + "embedded_users = nowhere\n", r"^\[mqtt\] embedded_users: no such file"),
        (MINIMAL + "embedded_host = 0.0.0.0\nusername = ocppgw\n", r"^\[mqtt\] password: "),
        ("[listener:ws]\nendpoint = tcp:8080\n[mqtt]\nbroker = mqtt://b.example\n"
         "embedded_users = users\n", r"^\[mqtt\] embedded_users: only used with broker = embedded"),
    ],
)
def test_embedded_users_errors(tmp_path: Path, text: str, message: str) -> None:
    """embedded_users needs the gateway's login, an existing file and the embedded broker."""
    (tmp_path / "users").write_text("csms backend-password\n")
    with pytest.raises(ConfigError, match=message):
        parse(text, base_dir=str(tmp_path))
