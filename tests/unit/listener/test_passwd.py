"""ocppgw-passwd and the credentials file."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from ocppgw.listener.credentials import (
    Credentials,
    CredentialsError,
    make_entry,
    read_file,
    write_file,
)
from ocppgw.listener.passwd import PASSWORD_ALPHABET, main


@pytest.fixture
def caplog_events() -> Iterator[list[dict[str, object]]]:
    """The Twisted log events emitted during the test."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


def test_set_list_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """set stores a salted hash (never the password), list shows it, delete removes it."""
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP 1"], "s3cret-password-1\n") == 0
    text = Path(f).read_text()
    assert "s3cret" not in text and "CP%201 sha256$" in text
    assert Credentials(f).check("CP 1", b"s3cret-password-1")
    assert not Credentials(f).check("CP 1", b"s3cret-password-2")
    assert run(monkeypatch, ["--file", f, "list"]) == 0
    assert "CP 1\tprofile=1" in capsys.readouterr().out
    assert run(monkeypatch, ["--file", f, "delete", "CP 1"]) == 0
    assert read_file(f) == {}
    assert (Path(f).stat().st_mode & 0o777) == 0o600


def test_hex_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--hex stores the AuthorizationKey's raw bytes as the password."""
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP16", "--hex", "deadbeef" * 5]) == 0
    assert Credentials(f).check("CP16", bytes.fromhex("deadbeef" * 5))


@pytest.mark.parametrize("argv, stdin, message", [
    (["set", "CP1", "--hex", "xyz"], "", "hexadecimal"),
    (["set", "CP1", "--hex", "00" * 21], "", "at most 20 bytes"),
    (["set", "CP1", "--hex", "00" * 21, "--weak"], "", "at most 20 bytes"),
    (["set", "CP1", "--hex", "00" * 15], "", "the key has 15 bytes"),
    (["set", "CP1"], "a" * 15 + "\n", "the password has 15 characters; OCPP asks for 16 to 40"),
    (["set", "CP1"], "a" * 41 + "\n", "the password has 41 characters"),
    (["set", "CP1"], "", "no password"),
    (["set", "a/b"], "pw\n", "must not contain"),
    (["delete", "nobody"], "", "no such identity"),
])
def test_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str,
                message: str) -> None:
    """Bad input exits 2 with a message naming the problem."""
    assert run(monkeypatch, ["--file", str(tmp_path / "c"), *argv], stdin) == 2
    assert message in capsys.readouterr().err


def test_bad_file_names_line(tmp_path: Path) -> None:
    """A corrupt credentials file is reported with its file and line."""
    f = tmp_path / "creds"
    f.write_text("# comment\nCP1 md5$abc$def\n")
    with pytest.raises(CredentialsError, match=r"creds:2: the second field is not a sha256"):
        read_file(str(f))


@pytest.mark.parametrize("line", [
    "CP1 Pasted-Secret-0xC0FFEE",
    "CP1 sha256$Pasted-Secret-0xC0FFEE",
    "CP1 sha256$c2FsdA==$" + "A" * 43 + "= Pasted-Secret-0xC0FFEE",
    "CP1 sha256$c2FsdA==$" + "A" * 43 + "= profile=Pasted-Secret-0xC0FFEE",
    "Pasted-Secret-0xC0FFEE",
])
def test_bad_line_is_not_echoed(tmp_path: Path, line: str) -> None:
    """A malformed line (a pasted plaintext password) is named by line number, never quoted."""
    f = tmp_path / "creds"
    f.write_text(line + "\n")
    with pytest.raises(CredentialsError) as e:
        read_file(str(f))
    assert "creds:1: " in str(e.value)
    assert "C0FFEE" not in str(e.value)


def test_weak_marked_and_old_files_parse(tmp_path: Path,
                                         caplog_events: list[dict[str, object]]) -> None:
    """`weak` round-trips, a line without it (an old file) is strong; a load logs the count."""
    f = str(tmp_path / "creds")
    write_file(f, {
        "CP1": make_entry("CP1", b"x" * 8, weak=True),
        "CP2": make_entry("CP2", b"y" * 20),
    })
    text = Path(f).read_text()
    assert [line.endswith(" weak") for line in text.splitlines()[1:]] == [True, False]
    old = tmp_path / "old"
    # A line as written before `weak` existed.
    old.write_text(text.splitlines()[2] + "\n")
    assert read_file(str(old))["CP2"].weak is False
    creds = Credentials(f)
    assert creds.weak() == 1 and creds.get("CP1") is not None
    lines = [formatEvent(e) for e in caplog_events]
    assert "[auth] credentials loaded: 2 identities, 1 weak" in " ".join(lines), lines


def test_reloads_when_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running gateway sees ocppgw-passwd's changes without a restart."""
    f = str(tmp_path / "creds")
    run(monkeypatch, ["--file", f, "set", "CP1"], "first-password-16\n")
    creds = Credentials(f)
    run(monkeypatch, ["--file", f, "set", "CP2"], "second-password-16\n")
    assert creds.check("CP2", b"second-password-16")


def test_broken_file_keeps_last_good_and_is_tried_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken or non-regular file keeps the last good entries and is read once per change."""
    f = tmp_path / "creds"
    run(monkeypatch, ["--file", str(f), "set", "CP1"], "first-password-16\n")
    creds = Credentials(str(f))
    f.write_text("CP1 not-a-hash\n")
    with pytest.raises(CredentialsError):
        creds.reload()
    reads: list[str] = []
    monkeypatch.setattr("ocppgw.listener.credentials.read_file", lambda p: reads.append(p) or {})
    assert creds.check("CP1", b"first-password-16")
    assert creds.check("CP1", b"first-password-16")
    assert reads == [], "a broken file was read again on a handshake"
    f.unlink()
    os.mkfifo(f)
    assert creds.check("CP1", b"first-password-16")
    assert reads == [], "a FIFO was opened"
    with pytest.raises(CredentialsError, match="not a regular file"):
        creds.reload()


def test_generate_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    """--generate key prints 40 hex digits once; their 20 raw bytes are the password."""
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP16", "--generate", "key"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) == 40 and int(key, 16) >= 0
    assert Credentials(f).check("CP16", bytes.fromhex(key))
    assert key not in Path(f).read_text()


def test_generate_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """--generate password prints a passwordString of --length characters, different each time."""
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP2", "--generate", "password",
                             "--length", "16"]) == 0
    first = capsys.readouterr().out.strip()
    assert len(first) == 16 and set(first) <= set(PASSWORD_ALPHABET)
    assert Credentials(f).check("CP2", first.encode())
    assert run(monkeypatch, ["--file", f, "set", "CP2", "--generate", "password"]) == 0
    second = capsys.readouterr().out.strip()
    assert len(second) == 40 and second != first
    assert run(monkeypatch, ["--file", f, "set", "CP2", "--generate", "password",
                             "--length", "41"]) == 2


def test_profile_and_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """--profile and --serial are stored and listed; a password change keeps them."""
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP1"], "password-password\n") == 0
    assert run(monkeypatch, ["--file", f, "set", "CP3", "--profile", "3", "--serial", "SN 7"],
               "password-password\n") == 0
    assert run(monkeypatch, ["--file", f, "set", "CP3"], "another-password-1\n") == 0
    entries = read_file(f)
    assert (entries["CP1"].profile, entries["CP1"].serial) == (1, None)
    assert (entries["CP3"].profile, entries["CP3"].serial) == (3, "SN 7")
    assert "serial=SN%207" in Path(f).read_text()
    run(monkeypatch, ["--file", f, "list"])
    out = capsys.readouterr().out
    assert "CP1\tprofile=1\n" in out and "CP3\tprofile=3\tserial=SN 7\n" in out
    with pytest.raises(SystemExit):
        run(monkeypatch, ["--file", f, "set", "CP3", "--profile", "4"], "x\n")


@pytest.mark.parametrize("argv, stdin", [
    (["--hex", "ab" * 15], ""),
    ([], "short-pw\n"),
])
def test_weak_needs_flag_and_is_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], argv: list[str],
                                       stdin: str) -> None:
    """
    A 15-byte key or short password is refused with advice, and not echoed;
    --weak stores it marked weak.
    """
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP1", *argv], stdin) == 2
    err = capsys.readouterr().err
    assert "--generate" in err and "--weak" in err
    assert "ab" * 15 not in err and "short-pw" not in err  # the refused secret is not echoed
    assert not os.path.exists(f)
    assert run(monkeypatch, ["--file", f, "set", "CP1", *argv, "--weak"], stdin) == 0
    entry = read_file(f)["CP1"]
    assert entry.weak
    password = bytes.fromhex("ab" * 15) if argv else b"short-pw"
    assert Credentials(f).check("CP1", password)
    run(monkeypatch, ["--file", f, "list"])
    assert "CP1\tprofile=1\tweak\n" in capsys.readouterr().out


@pytest.mark.parametrize("argv, stdin", [
    (["--hex", "ab" * 16], ""),
    ([], "p" * 16 + "\n"),
    ([], "p" * 40 + "\n"),
    (["--weak"], "p" * 20 + "\n"),
])
def test_good_length_is_not_weak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 argv: list[str], stdin: str) -> None:
    """A 16-byte key, a 16- or 40-character password is stored unmarked, with --weak too."""
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP1", *argv], stdin) == 0
    assert not read_file(f)["CP1"].weak


def test_generate_alone_makes_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--generate with no argument prints a 40-hex-digit key once, stored as a strong entry."""
    f = str(tmp_path / "creds")
    assert run(monkeypatch, ["--file", f, "set", "CP1", "--generate"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) == 40 and int(key, 16) >= 0
    assert Credentials(f).check("CP1", bytes.fromhex(key))
    assert not read_file(f)["CP1"].weak and key not in Path(f).read_text()
