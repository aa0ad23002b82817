"""
Who may use the embedded broker and whether its port is free (issues 24
and 22): the backends' logins file, mosquitto's password file, and the
process that holds a taken port.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from ocppgw.config import parse
from ocppgw.mqtt.broker import embedded_broker, mosquitto_config
from ocppgw.mqtt.broker_access import (
    BrokerAccessError,
    password_entry,
    port_holder,
    port_problem,
    read_users,
    write_password_file,
)

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def test_users_file_lines_and_comments(tmp_path: Path) -> None:
    """``user password`` lines are read in order; blank lines and # comments are skipped."""
    users = tmp_path / "users"
    users.write_text("# backends\n\ncsms s3cret-one\n  billing   s3cret-two  \n")
    assert read_users(str(users)) == [("csms", "s3cret-one"), ("billing", "s3cret-two")]


@pytest.mark.parametrize(
    "line, why",
    [
        ("csms", "want 'user password'"),
        ("csms pass word-leaked", "want 'user password'"),
        ("cs:ms hunter2-leaked", "must not hold ':'"),
    ],
)
def test_users_file_errors_name_the_line_not_its_text(tmp_path: Path, line: str, why: str) -> None:
    """A bad line is named by file and number, and its text (a password) is not echoed."""
    users = tmp_path / "users"
    users.write_text(f"ok fine-password\n{line}\n")
    with pytest.raises(BrokerAccessError) as e:
        read_users(str(users))
    assert f"{users} line 2: " in str(e.value) and why in str(e.value)
    assert "leaked" not in str(e.value)


def test_users_file_refuses_a_user_twice(tmp_path: Path) -> None:
    """Two entries for one user are refused, naming the second line."""
    users = tmp_path / "users"
    users.write_text("csms one-password\ncsms two-password\n")
    with pytest.raises(BrokerAccessError, match="line 2: a second entry for the same user"):
        read_users(str(users))


def test_password_entry_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    """
    A password file line is mosquitto_passwd's own: with the salt it chose,
    ours is the same line, character for character.
    """
    plain = tmp_path / "passwords"
    plain.write_text("csms:correct horse battery\n")
    plain.chmod(0o600)
    subprocess.run([MOSQUITTO_PASSWD, "-U", str(plain)], check=True, capture_output=True)
    theirs = plain.read_text().strip()
    assert theirs.startswith("csms:$7$101$"), theirs
    salt = base64.b64decode(theirs.split("$")[3])
    assert password_entry("csms", "correct horse battery", salt) == theirs


def test_password_file_mode_and_owner(tmp_path: Path) -> None:
    """The password file is mode 0600, and the mosquitto user's when we are root."""
    path = tmp_path / "passwords"
    write_password_file(str(path), [("gw", "gateway-password"), ("csms", "backend-password")])
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["gw", "csms"]
    assert "gateway-password" not in path.read_text()
    if os.geteuid() == 0:
        assert info.st_uid == pwd.getpwnam("mosquitto").pw_uid
    else:
        assert info.st_uid == os.geteuid()


def test_config_with_password_file_refuses_anonymous() -> None:
    """With a password file, mosquitto.conf turns anonymous access off and names the file."""
    lines = mosquitto_config("0.0.0.0", 18830, "/run/x", "/run/x/passwords").splitlines()
    assert "allow_anonymous false" in lines and "password_file /run/x/passwords" in lines
    assert "allow_anonymous true" not in lines
    assert "allow_anonymous true" in mosquitto_config("127.0.0.1", 18830, "/run/x").splitlines()


def test_free_port_has_no_problem() -> None:
    """A port nothing listens on is fine, also right after a socket on it closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port_problem("127.0.0.1", port) is None


def test_taken_port_names_its_process(listener: socket.socket) -> None:
    """
    A port another socket listens on: one line naming [mqtt] embedded_port,
    the port, the process that holds it (here: this one) and the broker URL
    to use it instead.
    """
    port = listener.getsockname()[1]
    with open(f"/proc/{os.getpid()}/comm") as f:
        name = f.read().strip()
    assert port_holder(port) == (os.getpid(), name)
    problem = port_problem("127.0.0.1", port)
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"[mqtt] embedded_port: {port} on 127.0.0.1 is already in use")
    assert f"by {name} (pid {os.getpid()})" in problem
    assert f"[mqtt] broker = mqtt://127.0.0.1:{port}" in problem


def test_address_not_on_this_host_names_embedded_host() -> None:
    """An embedded_host that is no address of this host: a line naming [mqtt] embedded_host."""
    problem = port_problem("192.0.2.1", 18830)
    assert problem is not None
    assert problem.startswith("[mqtt] embedded_host: cannot listen on 192.0.2.1:18830")


def test_embedded_broker_refuses_the_gateway_login_among_backends(tmp_path: Path) -> None:
    """embedded_users may not hold the gateway's own username: the backends get their own."""
    (tmp_path / "users").write_text("ocppgw other-password\n")
    config = parse(
        "[listener:ws]\nendpoint = tcp:8080\n[mqtt]\nbroker = embedded\n"
        "username = ocppgw\npassword = gateway-password\nembedded_users = users\n",
        base_dir=str(tmp_path),
    )
    with pytest.raises(BrokerAccessError, match=r"^\[mqtt\] embedded_users: .* names \[mqtt\] u"):
        embedded_broker(None, config.mqtt)
