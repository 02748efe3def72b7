"""Command-line plumbing shared by ``mirror`` and ``deploy``: credential flags, error exits."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, Protocol, TypeVar

import click

from mirror.net.credentials import Credentials, resolve_credentials

F = TypeVar("F", bound=Callable[..., Any])


class ExitCoded(Protocol):
    """An error that carries the exit code it should end the process with."""

    exit_code: int


def compose_options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """One decorator applying ``decorators`` in the order written (a reusable option group)."""

    def apply(func: Any) -> Any:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


class Duration(click.ParamType[float]):
    """``90``, ``30s``, ``10m``, ``6h`` or ``1h30m``, converted to seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        from mirror.errors import InputError
        from mirror.schedule import parse_duration

        try:
            return parse_duration(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)


lock_option = click.option(
    "--lock",
    "lock_path",
    metavar="FILE",
    help="Lock file (default: ./images.lock, else the embedded NSM 2.0.0 lock).",
)


def registry_credential_options(func: F) -> F:
    """Add the seed's ``--registry-username/--registry-password[-stdin]/--registry-key``."""
    options = [
        click.option(
            "--registry-key",
            type=str,
            help="Path to a GKE JSON key file (user _json_key). Not with username/password.",
        ),
        click.option(
            "--registry-password-stdin",
            is_flag=True,
            help="Read the registry password from standard input (preferred).",
        ),
        click.option(
            "--registry-password",
            type=str,
            help=(
                "Registry password (visible in shell history; prefer --registry-password-stdin"
                " or MESHLIFT_REGISTRY_PASSWORD)."
            ),
        ),
        click.option("--registry-username", type=str, help="Username for --registry-server."),
    ]
    for option in options:
        func = option(func)
    return func


def credentials_from(params: dict[str, Any]) -> Credentials | None:
    """Pop the credential flags from click params and resolve them (InputError on misuse)."""
    return resolve_credentials(
        params.pop("registry_username", None),
        params.pop("registry_password", None),
        bool(params.pop("registry_password_stdin", False)),
        params.pop("registry_key", None),
    )


def enable_debug() -> None:
    """``--debug``: debug logs on stderr, and tracebacks instead of one-line errors."""
    import logging

    os.environ["MESHLIFT_DEBUG"] = "1"
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.INFO)


def fail(message: str, exit_code: int) -> NoReturn:
    """Print one line on stderr and exit."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code)


def exits_on_errors(*handled: type[BaseException]) -> Callable[[F], F]:
    """Turn ``handled`` errors (which carry ``exit_code``) into one stderr line and that code.

    With ``--debug`` or ``MESHLIFT_DEBUG=1`` the traceback is shown as well.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except handled as exc:
                if os.environ.get("MESHLIFT_DEBUG") == "1":
                    raise
                fail(str(exc), int(getattr(exc, "exit_code", 1)))
            except KeyboardInterrupt:
                fail("interrupted", 130)

        return wrapper  # type: ignore[return-value]

    return decorate
