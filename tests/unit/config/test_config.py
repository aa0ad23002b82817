"""The INI configuration: defaults, and errors that name section and key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ocppgw.config import SECTIONS, ConfigError, HTTPAuthConfig, load, parse

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = "[listener:ws]\nendpoint = tcp:8080\n"


def test_defaults() -> None:
    """A minimal file gets the documented defaults (EMQX gateway topics)."""
    config = parse(MINIMAL)
    assert config.versions == ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
    assert config.mqtt.embedded and config.mqtt.qos == 1
    assert config.upstream.call.template.text == "ocpp/cp/${cid}/${action}"
    assert config.upstream.reply.template.text == "ocpp/cp/Reply/${cid}"
    assert config.upstream.error.template.text == "ocpp/cp/Error/${cid}"
    assert config.downstream.topic.template.text == "ocpp/cs/${cid}/+/+"
    assert config.upstream.call.codec == "json"
    (listener,) = config.listeners
    assert (listener.name, listener.path, listener.security_profile) == ("ws", "/ocpp", 0)


def test_action_override_and_codecs() -> None:
    """[upstream:ACTION] overrides topic and codec of that action's CALLs only."""
    config = parse(
        MINIMAL
        + "[upstream]\ncodec = raw\nerror_codec = json\n"
        + "[upstream:StatusNotification]\ntopic = st/${cid}\ncodec = json\n"
    )
    status = config.upstream.call_topic("StatusNotification")
    assert (status.template.text, status.codec) == ("st/${cid}", "json")
    heartbeat = config.upstream.call_topic("Heartbeat")
    assert (heartbeat.template.text, heartbeat.codec) == ("ocpp/cp/${cid}/${action}", "raw")
    assert config.upstream.reply.codec == "raw"
    assert config.upstream.error.codec == "json"


def test_action_override_of_the_codec_alone() -> None:
    """An [upstream:ACTION] with only a codec keeps the [upstream] topic for that action."""
    config = parse(MINIMAL + "[upstream]\ntopic = up/${cid}/${action}\n"
                   + "[upstream:MeterValues]\ncodec = protobuf\n")
    meter = config.upstream.call_topic("MeterValues")
    assert (meter.template.text, meter.codec) == ("up/${cid}/${action}", "protobuf")


def test_external_broker() -> None:
    """mqtt://HOST:PORT selects an external broker."""
    config = parse(MINIMAL + "[mqtt]\nbroker = mqtt://broker.example:1884\n")
    assert (config.mqtt.embedded, config.mqtt.host, config.mqtt.port) == (
        False, "broker.example", 1884)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"\[listener:NAME\]: at least one"),
        ("[listener:a]\n", r"\[listener:a\] endpoint: required"),
        (MINIMAL + "[gateway]\ncolour = blue\n", r"\[gateway\] colour: unknown key"),
        (MINIMAL + "[nonsense]\n", r"\[nonsense\]: unknown section"),
        (MINIMAL + "[mqtt]\nqos = 3\n", r"\[mqtt\] qos: must be 0, 1 or 2"),
        (MINIMAL + "[mqtt]\nbroker = http://x\n", r"\[mqtt\] broker:"),
        (MINIMAL + "[mqtt]\nkeepalive = soon\n", r"\[mqtt\] keepalive: must be a whole"),
        (MINIMAL + "[gateway]\nversions = ocpp1.5\n", r"\[gateway\] versions: unknown version"),
        (MINIMAL + "[upstream]\ncodec = xml\n", r"\[upstream\] codec: unknown codec 'xml'"),
        (MINIMAL + "[upstream]\ntopic = a/${x}\n", r"\[upstream\] topic: unknown placeholder"),
        (MINIMAL + "[dnstream]\ntopic = cs/+\n", r"\[dnstream\] topic: .*\$\{cid\}"),
        (MINIMAL + "[upstream:Boot/x]\ntopic = a\n", r"\[upstream:Boot/x\]: .*not an OCPP"),
        ("[listener:a]\nendpoint = tcp:1\nsecurity_profile = 1\n",
         r"\[auth\] credentials: required"),
        (MINIMAL + "[auth]\nhttp_url = ftp://auth\n", r"\[auth\] http_url: not an http"),
        (MINIMAL + "[auth]\nhttp_url = http://a\nhttp_on_error = allow\n",
         r"\[auth\] http_on_error: "),
        (MINIMAL + "[auth]\nhttp_url = http://a\nhttp_timeout = 0\n", r"\[auth\] http_timeout"),
        (MINIMAL + "[auth]\nhttp_url = http://a\nhttp_headers = /nonexistent/h\n",
         r"\[auth\] http_headers: no such file"),
        ("[listener:a]\nendpoint = tcp:1\nsecurity_profile = 1\n"
         "[auth]\nhttp_url = http://a\nhttp_on_error = file\n",
         r"\[auth\] http_on_error: file needs \[auth\] credentials"),
        ("[listener:a]\nendpoint = tcp:1\nsecurity_profile = 7\n",
         r"\[listener:a\] security_profile: must be from 0 to 3"),
        ("[listener:a]\nendpoint = tcp:1\ndefault_version = ocpp2.1\n"
         "[gateway]\nversions = ocpp1.6\n", r"\[listener:a\] default_version"),
        ("[listener:a]\nendpoint = tcp:1\npath = ocpp\n", r"\[listener:a\] path: must start"),
        ("garbage", r"<string>"),
    ],
)
def test_errors_name_section_and_key(text: str, message: str) -> None:
    """Each bad configuration fails with a message naming its section and key."""
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_missing_credentials_file(tmp_path: Path) -> None:
    """A credentials file that does not exist is named in the error."""
    ini = tmp_path / "gw.ini"
    ini.write_text("[listener:a]\nendpoint = tcp:1\nsecurity_profile = 1\n"
                   "[auth]\ncredentials = creds.txt\n")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "creds.txt"))):
        load(str(ini))


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    """[auth] credentials is resolved against the INI file's directory."""
    (tmp_path / "creds.txt").write_text("")
    ini = tmp_path / "gw.ini"
    ini.write_text("[listener:a]\nendpoint = tcp:1\nsecurity_profile = 1\n"
                   "[auth]\ncredentials = creds.txt\n")
    assert load(str(ini)).credentials == str(tmp_path / "creds.txt")


def test_missing_file() -> None:
    """A configuration file that cannot be read is a clear error."""
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load("/nonexistent/ocppgw.ini")


def test_shipped_file_is_valid_and_documents_every_key() -> None:
    """etc/ocppgw.ini loads, and names every key of every section with its default."""
    path = ROOT / "etc" / "ocppgw.ini"
    load(str(path))
    text = path.read_text()
    for section, declared in SECTIONS.items():
        header = f"[{section}" if section.endswith(":") else f"[{section}]"
        assert header in text, f"{header} is not documented"
        for key, spec in declared.keys.items():
            if section.endswith(":") or spec.default in (None, ""):
                pattern = rf"^#?{key} ="
            else:
                pattern = rf"^#?{key} = {re.escape(spec.default)}$"
            assert re.search(pattern, text, re.M), f"[{section}] {key} is not documented"
    assert os.path.basename(path) == "ocppgw.ini"


def _tls_dir(tmp_path: Path) -> Path:
    for name in ("rsa.pem", "rsa.key", "ec.pem", "ec.key", "ca.pem", "creds"):
        (tmp_path / name).write_text("")
    return tmp_path


@pytest.mark.parametrize(
    "listener, message",
    [
        ("security_profile = 2\n", r"\[listener:a\] tls_cert: required for security_profile 2"),
        ("security_profile = 2\ntls_cert = rsa.pem ec.pem\ntls_key = rsa.key\n",
         r"\[listener:a\] tls_key: 1 key file\(s\) for 2"),
        ("security_profile = 2\ntls_cert = nope.pem\ntls_key = rsa.key\n",
         r"\[listener:a\] tls_cert: no such file: .*nope.pem"),
        ("security_profile = 3\ntls_cert = rsa.pem\ntls_key = rsa.key\n",
         r"\[listener:a\] tls_ca: required for security_profile 3"),
        ("security_profile = 2\ntls_cert = rsa.pem\ntls_key = rsa.key\ntls_ca = ca.pem\n",
         r"\[listener:a\] tls_ca: only used with security_profile 3"),
        ("cert_identity = name\n", r"\[listener:a\] cert_identity: must be one of cn, serial"),
        ("security_profile = 3\ntls_cert = rsa.pem\ntls_key = rsa.key\ntls_ca = ca.pem\n"
         "tls_crl = nope.crl\n", r"\[listener:a\] tls_crl: no such file: .*nope.crl"),
        ("security_profile = 2\ntls_cert = rsa.pem\ntls_key = rsa.key\ntls_crl = ca.pem\n",
         r"\[listener:a\] tls_crl: only used with security_profile 3 and tls_cert"),
        ("security_profile = 3\ntls_ca = ca.pem\ntrusted_proxies = 10.0.0.0/8\n"
         "tls_crl = ca.pem\n", r"\[listener:a\] tls_crl: only used with security_profile 3"),
        ("tls_crl_expired = ignore\n", r"\[listener:a\] tls_crl_expired: must be one of refuse"),
        ("trusted_proxies = 10.0.0.0/8 bogus\n", r"\[listener:a\] trusted_proxies: 'bogus'"),
        ("client_cert_header = X Cert\n", r"\[listener:a\] client_cert_header: must be"),
    ],
)
def test_tls_listener_errors(tmp_path: Path, listener: str, message: str) -> None:
    """TLS and proxy keys are checked against the profile; errors name section and key."""
    d = _tls_dir(tmp_path)
    text = f"[listener:a]\nendpoint = tcp:1\n{listener}[auth]\ncredentials = creds\n"
    with pytest.raises(ConfigError, match=message):
        parse(text, base_dir=str(d))


def test_tls_listener_values(tmp_path: Path) -> None:
    """Files resolve against the INI's directory; offload needs only trusted_proxies."""
    d = _tls_dir(tmp_path)
    config = parse(
        "[listener:a]\nendpoint = tcp:1\nsecurity_profile = 3\ntls_cert = rsa.pem ec.pem\n"
        "tls_key = rsa.key ec.key\ntls_ca = ca.pem\ncpo_name = ACME\n"
        "[listener:b]\nendpoint = tcp:2\nsecurity_profile = 2\ntrusted_proxies = 10.0.0.0/8\n"
        "[auth]\ncredentials = creds\nmax_failures_per_address = 0\n",
        base_dir=str(d),
    )
    a, b = config.listeners
    assert a.tls_cert == (str(d / "rsa.pem"), str(d / "ec.pem"))
    assert (a.tls_ca, a.cpo_name, a.cert_identity) == (str(d / "ca.pem"), "ACME", "cn")
    assert (a.tls_crl, a.tls_crl_expired) == ((), "refuse")
    assert b.tls_cert == () and [str(n) for n in b.trusted_proxies] == ["10.0.0.0/8"]
    assert config.login_limits.per_address == 0 and config.login_limits.per_identity == 10


@pytest.mark.parametrize(
    "mqtt, message",
    [
        ("broker = mqtt://h:1\ntls_ca = ca.pem\n", r"\[mqtt\] tls_ca: only used with broker"),
        ("broker = mqtts://h\ntls_cert = rsa.pem\n", r"\[mqtt\] tls_key: tls_cert and tls_key"),
        ("broker = mqtts://h\ntls_ca = missing.pem\n", r"\[mqtt\] tls_ca: no such file"),
        ("broker = tcp://h\n", r"\[mqtt\] broker: must be"),
    ],
)
def test_mqtt_tls_errors(tmp_path: Path, mqtt: str, message: str) -> None:
    """[mqtt] TLS keys need mqtts:// and readable files."""
    with pytest.raises(ConfigError, match=message):
        parse(MINIMAL + "[mqtt]\n" + mqtt, base_dir=str(_tls_dir(tmp_path)))


def test_mqtts_defaults(tmp_path: Path) -> None:
    """mqtts:// means TLS on port 8883 unless a port is given."""
    config = parse(MINIMAL + "[mqtt]\nbroker = mqtts://broker.example\ntls_ca = ca.pem\n",
                   base_dir=str(_tls_dir(tmp_path)))
    assert (config.mqtt.tls, config.mqtt.port, config.mqtt.tls_ca) == (
        True, 8883, str(tmp_path / "ca.pem"))


def test_imports_nothing_of_twisted() -> None:
    """The config stage imports nothing of Twisted, as its package docstring says."""
    probe = (
        "import sys, ocppgw.config\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'twisted'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_journal_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[gateway] journal: a directory (relative to the file), off, or by default the
    state directory of the user: /var/lib/ocppgw as root, else $XDG_STATE_HOME/ocppgw."""
    ini = tmp_path / "gw.ini"
    ini.write_text("[gateway]\njournal = state\n" + MINIMAL, encoding="utf-8")
    assert load(str(ini)).journal == str(tmp_path / "state")
    assert parse("[gateway]\njournal = off\n" + MINIMAL).journal is None
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert parse(MINIMAL).journal == "/var/lib/ocppgw"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert parse(MINIMAL).journal == str(tmp_path / "xdg" / "ocppgw")


def test_http_auth() -> None:
    """[auth] http_url and its keys reach the model; profile 1 then needs no credentials file."""
    config = parse(
        "[listener:a]\nendpoint = tcp:1\nsecurity_profile = 1\n"
        "[auth]\nhttp_url = https://auth.example/check\nhttp_timeout = 3\nhttp_cache = 0\n"
    )
    assert config.credentials is None
    assert config.http_auth == HTTPAuthConfig("https://auth.example/check", 3.0, 0.0, "deny", None)
    assert parse(MINIMAL).http_auth is None
