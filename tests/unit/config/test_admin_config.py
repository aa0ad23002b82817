"""The [admin] section, [gateway] log_format and [upstream] shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocppgw.config import ConfigError, load, parse

BASE = "[listener:ws]\nendpoint = tcp:8080\n"


def test_admin_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """By default the admin endpoint is a UNIX socket named after the gateway id, no token."""
    monkeypatch.setenv("OCPPGW_RUNTIME_DIR", str(tmp_path / "ocppgw"))
    config = parse("[gateway]\nid = gw-1\n" + BASE)
    path = str(tmp_path / "ocppgw" / "gw-1.sock")
    assert config.admin.endpoint == f"unix:{path}:mode=600:lockfile=1"
    assert config.admin.local == path
    assert config.admin.token is None
    assert config.admin.metrics_auth is True
    assert config.log_format == "text"
    assert config.upstream.shards == 1


def test_admin_off_and_token() -> None:
    """An empty endpoint turns the admin API off; the token is kept as written."""
    config = parse(BASE + "[admin]\nendpoint =\ntoken = s3cret\nmetrics_auth = false\n")
    assert config.admin.endpoint is None
    assert config.admin.token == "s3cret"
    assert config.admin.metrics_auth is False


def test_token_file(tmp_path: Path) -> None:
    """token_file is read relative to the INI file, surrounding whitespace dropped."""
    (tmp_path / "token").write_text("  abc\n")
    ini = tmp_path / "gw.ini"
    ini.write_text(BASE + "[admin]\ntoken_file = token\n")
    assert load(str(ini)).admin.token == "abc"


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("token = a\ntoken_file = b\n", "[admin] token, token_file: set one of them"),
        ("token_file = /nonexistent/token\n", "[admin] token_file: no such file"),
        ("metrics_auth = maybe\n", "[admin] metrics_auth"),
    ],
)
def test_admin_errors(admin: str, message: str) -> None:
    """A bad [admin] key is an error naming it."""
    with pytest.raises(ConfigError) as e:
        parse(BASE + "[admin]\n" + admin)
    assert message in str(e.value)


def test_empty_token_file(tmp_path: Path) -> None:
    """An empty token file is an error, not an API open to an empty token."""
    (tmp_path / "token").write_text("\n")
    ini = tmp_path / "gw.ini"
    ini.write_text(BASE + "[admin]\ntoken_file = token\n")
    with pytest.raises(ConfigError, match="is empty"):
        load(str(ini))


def test_log_format_choice() -> None:
    """[gateway] log_format is text or json; anything else names the key."""
    assert parse(BASE + "[gateway]\nlog_format = json\n").log_format == "json"
    with pytest.raises(ConfigError, match=r"\[gateway\] log_format"):
        parse(BASE + "[gateway]\nlog_format = xml\n")


@pytest.mark.parametrize("key", ["topic", "gateway_topic"])
def test_shard_rejected_in_presence_topics(key: str) -> None:
    """${shard} in a [presence] topic is a ConfigError naming it: presence carries no shard."""
    topic = "ocpp/presence/${shard}/${cid}" if key == "topic" else "ocpp/gateway/${shard}"
    with pytest.raises(ConfigError, match=rf"^\[presence\] {key}: .*\$\{{shard\}}"):
        parse(BASE + f"[presence]\n{key} = {topic}\n")


def test_admin_local_socket_escapes_and_other_endpoints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A colon of the gateway id is escaped in the endpoint string; tcp and a bare port are kept."""
    monkeypatch.setenv("OCPPGW_RUNTIME_DIR", str(tmp_path / "ocppgw"))
    config = parse("[gateway]\nid = site:1\n" + BASE)
    assert config.admin.endpoint == f"unix:{tmp_path}/ocppgw/site\\:1.sock:mode=600:lockfile=1"
    assert config.admin.local == f"{tmp_path}/ocppgw/site:1.sock"
    tcp = parse(BASE + "[admin]\nendpoint = tcp:9100:interface=127.0.0.1\n").admin
    assert (tcp.endpoint, tcp.local) == ("tcp:9100:interface=127.0.0.1", None)
    bare = parse(BASE + "[admin]\nendpoint = 9100\n").admin
    assert (bare.endpoint, bare.local) == ("tcp:9100", None)


@pytest.mark.parametrize("euid, xdg, chosen, expected", [
    (0, "/run/user/0", None, "/run/ocppgw"),
    (0, None, None, "/run/ocppgw"),
    (1000, "/run/user/1000", None, "/run/user/1000/ocppgw"),
    (1000, None, None, "TMP/ocppgw-1000"),
    (0, "/run/user/0", "/srv/sock", "/srv/sock"),
    (1000, "/run/user/1000", "/srv/sock", "/srv/sock"),
])
def test_runtime_directory(monkeypatch: pytest.MonkeyPatch, euid: int, xdg: str | None,
                           chosen: str | None, expected: str) -> None:
    """
    The local socket's directory: $OCPPGW_RUNTIME_DIR if set; root always
    /run/ocppgw (a root login shell's $XDG_RUNTIME_DIR would part ocppgw-ctl
    from a root service); another user's $XDG_RUNTIME_DIR/ocppgw, else the
    temporary directory's ocppgw-UID.
    """
    import tempfile

    from ocppgw.config.derived import runtime_directory

    monkeypatch.setattr("os.geteuid", lambda: euid)
    for name, value in (("XDG_RUNTIME_DIR", xdg), ("OCPPGW_RUNTIME_DIR", chosen)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert runtime_directory() == expected.replace("TMP", tempfile.gettempdir())
