"""Destination registry credentials from the seed's flags: username/password or a GKE key."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from mirror.errors import InputError

PASSWORD_ENV = "MESHLIFT_REGISTRY_PASSWORD"
GKE_KEY_USERNAME = "_json_key"
PASSWORD_FLAG_WARNING = (
    "Warning: Using the --registry-password flag can expose your plain text password "
    "on the console and in the console history."
)


@dataclass(frozen=True)
class Credentials:
    """A username and password; the password never shows in repr or str."""

    username: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return f"{self.username}:***"


def read_password_stdin(stream: TextIO) -> str:
    """All of standard input minus one trailing newline, as ``docker login --password-stdin``."""
    text = stream.read()
    text = text.removesuffix("\n")
    return text.removesuffix("\r")


def read_gke_key(path: str) -> Credentials:
    """Credentials for a GKE JSON key file: user ``_json_key``, password the file's text."""
    import json  # here, not at every command's start-up

    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
        raise InputError(f"--registry-key {path}: cannot read: {reason}") from None
    try:
        key = json.loads(text)
    except (ValueError, RecursionError):
        key = None
    if not isinstance(key, dict):
        raise InputError(f"--registry-key {path}: not a JSON key file (expected a JSON object)")
    return Credentials(GKE_KEY_USERNAME, text)


def resolve_credentials(
    username: str | None,
    password: str | None,
    password_stdin: bool,
    key_file: str | None,
    *,
    env: Mapping[str, str] = os.environ,
    stdin: TextIO | None = None,
    warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> Credentials | None:
    """Apply the seed's flag rules and return the destination credentials, if any."""
    if key_file is not None:
        if username is not None or password is not None or password_stdin:
            raise InputError(
                "--registry-key cannot be used with --registry-username or --registry-password"
            )
        return read_gke_key(key_file)
    if password is not None and password_stdin:
        raise InputError("--registry-password and --registry-password-stdin are exclusive")
    if username is None:
        if password is not None or password_stdin:
            raise InputError("--registry-password must be used with --registry-username")
        return None
    if password is not None:
        warn(PASSWORD_FLAG_WARNING)
        secret = password
    elif password_stdin:
        secret = read_password_stdin(stdin or sys.stdin)
    elif env.get(PASSWORD_ENV):
        secret = env[PASSWORD_ENV]
    else:
        raise InputError(
            "--registry-username must be used with --registry-password-stdin,"
            f" --registry-password or {PASSWORD_ENV}"
        )
    if not username:
        raise InputError("--registry-username must not be empty")
    return Credentials(username, secret)
