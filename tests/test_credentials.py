"""Destination credentials: the seed's flag rules, stdin, environment, GKE keys, secrecy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mirror.errors import InputError
from mirror.net.credentials import (
    GKE_KEY_USERNAME,
    PASSWORD_ENV,
    PASSWORD_FLAG_WARNING,
    Credentials,
    read_password_stdin,
    resolve_credentials,
)

SECRET = "s3cr3t-Pa55w0rd"
GKE_KEY = {"type": "service_account", "project_id": "p", "private_key": "-----BEGIN KEY-----"}


class Recorder:
    """Collects warnings instead of printing them."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)


def _resolve(
    username: str | None = None,
    password: str | None = None,
    password_stdin: bool = False,
    key_file: str | None = None,
    *,
    env: dict[str, str] | None = None,
    stdin: str = "",
    warn: Recorder | None = None,
) -> Credentials | None:
    return resolve_credentials(
        username,
        password,
        password_stdin,
        key_file,
        env=env or {},
        stdin=io.StringIO(stdin),
        warn=warn or Recorder(),
    )


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(GKE_KEY, indent=2) + "\n", encoding="utf-8")
    return str(path)


# --- flag rules -------------------------------------------------------------------------------


def test_no_flags_means_no_credentials() -> None:
    assert _resolve() is None
    # The environment password alone names no user: still anonymous.
    assert _resolve(env={PASSWORD_ENV: SECRET}) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": "u"}, "--registry-username must be used with --registry-password-stdin"),
        ({"password": SECRET}, "--registry-password must be used with --registry-username"),
        ({"password_stdin": True}, "--registry-password must be used with --registry-username"),
        (
            {"username": "u", "password": SECRET, "password_stdin": True},
            "--registry-password and --registry-password-stdin are exclusive",
        ),
        (
            {"password": SECRET, "password_stdin": True},
            "--registry-password and --registry-password-stdin are exclusive",
        ),
        ({"username": "", "password": SECRET}, "--registry-username must not be empty"),
    ],
)
def test_username_password_rules(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as info:
        _resolve(**kwargs, stdin=f"{SECRET}\n")  # type: ignore[arg-type]
    assert message in str(info.value)
    assert info.value.exit_code == 2
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"username": "u"},
        {"password": SECRET},
        {"password_stdin": True},
        {"username": "u", "password": SECRET},
        {"username": "u", "password_stdin": True},
    ],
)
def test_key_excludes_username_and_password(kwargs: dict[str, object], key_file: str) -> None:
    warn = Recorder()
    with pytest.raises(InputError) as info:
        _resolve(**kwargs, key_file=key_file, warn=warn)  # type: ignore[arg-type]
    assert "--registry-key cannot be used with --registry-username or --registry-password" in str(
        info.value
    )
    assert info.value.exit_code == 2
    assert SECRET not in str(info.value)
    assert warn.messages == []


# --- sources of the password ------------------------------------------------------------------


def test_password_flag_works_and_warns() -> None:
    warn = Recorder()
    assert _resolve("alice", SECRET, warn=warn) == Credentials("alice", SECRET)
    assert warn.messages == [PASSWORD_FLAG_WARNING]
    assert "console history" in PASSWORD_FLAG_WARNING


def test_default_warning_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    creds = resolve_credentials("alice", SECRET, False, None, env={})
    assert creds == Credentials("alice", SECRET)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == PASSWORD_FLAG_WARNING + "\n"
    assert SECRET not in err


@pytest.mark.parametrize(
    ("stdin", "password"),
    [
        (f"{SECRET}\n", SECRET),
        (f"{SECRET}\r\n", SECRET),
        (SECRET, SECRET),
        (f"{SECRET}\n\n", f"{SECRET}\n"),
        (f"{SECRET}\r\n\r\n", f"{SECRET}\r\n"),
        (f" {SECRET} \n", f" {SECRET} "),
        ("line1\nline2\n", "line1\nline2"),
        ("\tpass\tword\n", "\tpass\tword"),
    ],
)
def test_password_stdin_strips_exactly_one_trailing_newline(stdin: str, password: str) -> None:
    warn = Recorder()
    creds = _resolve("bob", password_stdin=True, stdin=stdin, warn=warn)
    assert creds == Credentials("bob", password)
    assert warn.messages == []


def test_read_password_stdin_reads_everything() -> None:
    assert read_password_stdin(io.StringIO("a\nb\nc\n")) == "a\nb\nc"


def test_env_password() -> None:
    warn = Recorder()
    creds = _resolve("carol", env={PASSWORD_ENV: SECRET}, warn=warn)
    assert creds == Credentials("carol", SECRET)
    assert warn.messages == []


def test_empty_env_password_counts_as_unset() -> None:
    with pytest.raises(InputError, match=PASSWORD_ENV):
        _resolve("carol", env={PASSWORD_ENV: ""})


def test_flags_win_over_env() -> None:
    env = {PASSWORD_ENV: "from-env"}
    assert _resolve("u", password_stdin=True, stdin="from-stdin\n", env=env) == Credentials(
        "u", "from-stdin"
    )
    assert _resolve("u", "from-flag", env=env) == Credentials("u", "from-flag")


# --- GKE key ----------------------------------------------------------------------------------


def test_gke_key(key_file: str) -> None:
    warn = Recorder()
    creds = _resolve(key_file=key_file, warn=warn)
    assert creds is not None
    assert creds.username == GKE_KEY_USERNAME == "_json_key"
    assert creds.password == Path(key_file).read_text(encoding="utf-8")
    assert warn.messages == []


def test_gke_key_relative_to_working_directory(
    key_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(key_file).parent)
    creds = _resolve(key_file="key.json")
    assert creds is not None
    assert json.loads(creds.password) == GKE_KEY


def test_gke_key_missing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(InputError) as info:
        _resolve(key_file=str(missing))
    assert str(info.value) == f"--registry-key {missing}: cannot read: No such file or directory"
    assert info.value.exit_code == 2


def test_gke_key_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--registry-key .*: cannot read"):
        _resolve(key_file=str(tmp_path))


@pytest.mark.parametrize(
    "content", [b"not json at all", b'{"type": ', b"", b"\xff\xfe{}", b"[1]", b'"key"', b"null"]
)
def test_gke_key_not_json(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        _resolve(key_file=str(path))
    assert str(info.value).startswith(f"--registry-key {path}: ")
    assert info.value.exit_code == 2
    if content and content[:1] != b"\xff":
        assert content.decode() not in str(info.value).replace(str(path), "")


# --- secrecy ----------------------------------------------------------------------------------


def test_credentials_never_show_the_password(key_file: str) -> None:
    creds = Credentials("alice", SECRET)
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}", repr([creds])):
        assert SECRET not in text
        assert "alice" in text
    assert str(creds) == "alice:***"
    gke = _resolve(key_file=key_file)
    assert gke is not None
    assert GKE_KEY["private_key"] not in repr(gke)
    assert GKE_KEY["private_key"] not in str(gke)
