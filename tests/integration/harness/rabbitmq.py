"""
A two-node RabbitMQ cluster on loopback for test_rabbitmq_cluster.py: Debian's
``rabbitmq-server`` (``make install`` puts it there) with its MQTT plugin,
each node with its own name, ports, data and log directories under the
test's directory, one Erlang cookie, and an epmd of their own on a free
loopback port, so nothing of the machine's RabbitMQ (if any) is touched.

The nodes start in parallel; the second joins the first with
``rabbitmqctl join_cluster``.  Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import Broker, accepts, free_port, read_log

#: Where Debian puts the scripts that run as the calling user (the ones on
#: PATH switch to the rabbitmq user and its home when run as root).
BIN = Path("/usr/lib/rabbitmq/bin")
#: A node's start (the Erlang VM, Mnesia, the MQTT listener) on a loaded machine.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
CTL_TIMEOUT = 60.0


@dataclass
class Node:
    """One RabbitMQ node: its name, ports and environment."""

    name: str
    mqtt_port: int
    env: dict[str, str]
    directory: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def broker(self) -> Broker:
        """The node's MQTT listener as the harness's Broker (``url``, ``port``)."""
        return Broker(port=self.mqtt_port, proc=self.proc, log_path=self.log_path)

    @property
    def log_path(self) -> Path:
        return self.directory / "stdout.log"

    def log(self) -> str:
        text = read_log(self.log_path)
        for path in sorted((self.directory / "log").glob("*.log")):
            text += f"\n--- {path.name}\n" + read_log(path)
        return text

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT) -> str:
        """``rabbitmqctl -n NODE ARGS``; its output, or AssertionError naming it."""
        done = subprocess.run(
            [str(BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"rabbitmqctl {' '.join(args)} on {self.name}: {done.returncode}\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout


def available() -> str | None:
    """Why no cluster can start here, or None if rabbitmq-server is installed."""
    if not (BIN / "rabbitmq-server").exists() or shutil.which("erl") is None:
        return "rabbitmq-server is not installed (make install installs it with apt-get)"
    return None


def _node(directory: Path, short: str, epmd_port: int, home: Path) -> Node:
    directory.mkdir(parents=True)
    (directory / "log").mkdir()
    node_port, dist_port, mqtt_port = free_port(), free_port(), free_port()
    config = directory / "rabbitmq.conf"
    config.write_text(
        f"listeners.tcp.default = 127.0.0.1:{node_port}\n"
        f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}\n"
        "mqtt.allow_anonymous = true\n"
        "loopback_users = none\n",
        encoding="utf-8",
    )
    plugins = directory / "enabled_plugins"
    plugins.write_text("[rabbitmq_mqtt].\n", encoding="utf-8")
    name = f"{short}@localhost"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),  # its .erlang.cookie is the cluster's cookie
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(node_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(config),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
        # Erlang distribution on loopback only.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    return Node(name, mqtt_port, env, directory)


def _start(node: Node) -> None:
    with open(node.log_path, "wb") as out:
        node.proc = subprocess.Popen(
            [str(BIN / "rabbitmq-server")],
            env=node.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=node.directory,
            start_new_session=True,
        )
    # wait: for the pid file, then for the node to have booted, its plugins included.
    node.ctl(
        "wait",
        node.env["RABBITMQ_PID_FILE"],
        "--timeout",
        str(int(START_TIMEOUT)),
        timeout=START_TIMEOUT + 5,
    )
    deadline = time.monotonic() + 10
    while not accepts(node.mqtt_port):
        if node.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{node.name}: no MQTT listener\n{node.log()}")
        time.sleep(0.05)


@dataclass
class Cluster:
    """Two joined nodes, ``a`` and ``b``, and how long they took to start."""

    a: Node
    b: Node
    epmd_port: int
    started_in: float = 0.0

    def stop(self) -> None:
        """Stop both nodes (rabbitmqctl stop, then SIGKILL) and the cluster's epmd."""
        for node in (self.a, self.b):
            if node.proc is not None and node.proc.poll() is None:
                try:
                    node.ctl("stop", timeout=STOP_TIMEOUT)
                    node.proc.wait(STOP_TIMEOUT)
                except (AssertionError, subprocess.TimeoutExpired):
                    os.killpg(node.proc.pid, 9)
                    node.proc.wait(STOP_TIMEOUT)
        subprocess.run(
            ["epmd", "-port", str(self.epmd_port), "-kill"],
            env={**self.a.env},
            capture_output=True,
            timeout=10,
            check=False,
        )


def start_cluster(directory: Path) -> Cluster:
    """Start nodes rabbit-a and rabbit-b in parallel, join b to a; the cluster once both run."""
    home = directory / "home"
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text("OCPPGWTESTCOOKIE", encoding="ascii")
    cookie.chmod(0o400)
    epmd_port = free_port()
    cluster = Cluster(
        _node(directory / "a", "rabbit-a", epmd_port, home),
        _node(directory / "b", "rabbit-b", epmd_port, home),
        epmd_port,
    )
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(_start, n) for n in (cluster.a, cluster.b)]:
                started.result()
        b = cluster.b
        b.ctl("stop_app")
        b.ctl("join_cluster", cluster.a.name)
        b.ctl("start_app")
        b.ctl("await_startup", "--timeout", str(int(START_TIMEOUT)), timeout=START_TIMEOUT + 5)
        deadline = time.monotonic() + 10
        while not accepts(b.mqtt_port):
            if time.monotonic() > deadline:
                raise AssertionError(f"{b.name}: no MQTT listener after join\n{b.log()}")
            time.sleep(0.05)
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in = time.monotonic() - began
    return cluster
