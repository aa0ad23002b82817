# -*- test-case-name: tests.unit.mqtt.test_broker_access -*-
"""
Who may use the embedded broker, and whether its port is free.

**Logins** (issue 24).  On a loopback ``embedded_host`` the embedded mosquitto
may stay anonymous; anywhere else it needs logins: the gateway's own
(``[mqtt] username`` / ``password``) and the backends' (``[mqtt]
embedded_users = FILE``, lines ``user password``).  :func:`read_users` reads
that file (its errors name the line, never its text: it holds passwords);
:func:`write_password_file` writes mosquitto's ``password_file``, each
password hashed in mosquitto's documented PBKDF2-SHA512 format
(``user:$7$ITERATIONS$SALT$HASH``, as ``mosquitto_passwd`` writes it), mode
0600.  Started as root, mosquitto drops to its own user before it reads the
file, so the file is then that user's.

**The port** (issue 22).  Another process already listening on
``embedded_port`` would make the embedded mosquitto fail forever while the
gateway silently used the other broker.  :func:`port_problem` tries the bind
first and, if the port is taken, names the process that holds it (from
/proc/net/tcp, /proc/net/tcp6 and /proc/PID/fd, where permitted).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import pwd
import socket
from collections.abc import Sequence
from typing import Protocol

#: mosquitto_passwd's defaults: PBKDF2-HMAC-SHA512, 101 iterations, 12 bytes of salt.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12


class BrokerSettings(Protocol):
    """What :func:`ocppgw.mqtt.broker.embedded_broker` reads of ``[mqtt]`` (MQTTConfig)."""

    @property
    def mosquitto(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def embedded_users(self) -> str | None: ...


class BrokerAccessError(Exception):
    """The embedded broker's logins or port cannot be set up as configured."""


def read_users(path: str) -> list[tuple[str, str]]:
    """
    The ``user password`` lines of ``path`` (blank lines and ``#`` comments
    skipped).  An error names the file and the line number, not the line.

    :raises BrokerAccessError: unreadable file, or a line that is not two fields.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise BrokerAccessError(
            f"cannot read {path}: {getattr(e, 'strerror', None) or e}"
        ) from None
    users: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise BrokerAccessError(f"{path} line {number}: want 'user password' (two fields)")
        user, password = fields
        if ":" in user:
            raise BrokerAccessError(f"{path} line {number}: a user name must not hold ':'")
        if user in seen:
            raise BrokerAccessError(f"{path} line {number}: a second entry for the same user")
        seen.add(user)
        users.append((user, password))
    return users


def password_entry(user: str, password: str, salt: bytes | None = None) -> str:
    """One line of a mosquitto password file, as ``mosquitto_passwd`` hashes it."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    encode = base64.b64encode
    return f"{user}:$7${PBKDF2_ITERATIONS}${encode(salt).decode()}${encode(digest).decode()}"


def write_password_file(path: str, users: Sequence[tuple[str, str]]) -> None:
    """
    mosquitto's ``password_file`` for ``users`` at ``path``: mode 0600, and the
    ``mosquitto`` user's when we are root (mosquitto reads it as that user).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(password_entry(u, p) + "\n" for u, p in users))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("mosquitto")
        except KeyError:
            return  # no such user: mosquitto keeps running as root
        os.chown(path, owner.pw_uid, owner.pw_gid)


_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == _LISTEN:
                if int(fields[1].rpartition(":")[2], 16) == port:
                    inodes.add(fields[9])
    return inodes


def port_holder(port: int) -> tuple[int, str] | None:
    """The pid and name of a process listening on TCP ``port``, if we may see it."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
                    return int(pid), f.read().strip()
        except OSError:
            continue  # not ours to look at, or gone meanwhile
    return None


def port_problem(host: str, port: int) -> str | None:
    """
    Why the embedded broker could not listen on ``host:port`` (a line naming
    the key, and the process holding the port when it is taken), or None.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as e:
        return f"[mqtt] embedded_host: cannot resolve {host}: {e.strerror or e}"
    with socket.socket(family, kind, proto) as s:
        # As mosquitto binds: a closed connection's TIME_WAIT does not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                return f"[mqtt] embedded_host: cannot listen on {host}:{port}: {e.strerror}"
        else:
            return None
    holder = port_holder(port)
    who = f"{holder[1]} (pid {holder[0]})" if holder else "another process"
    url = f"mqtt://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if ":" in host and host != "::":
        url = f"mqtt://[{host}]:{port}"
    return (
        f"[mqtt] embedded_port: {port} on {host} is already in use by {who}, so the "
        f"embedded broker cannot listen there; to use that broker instead set "
        f"[mqtt] broker = {url}, or choose another embedded_port"
    )
