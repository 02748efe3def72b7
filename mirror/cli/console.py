"""The console plumbing ``mirror`` and ``deploy`` share: the command group with ``--debug`` and
``--version``, and errors turned into one line on stderr and an exit code."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def command_group(about: str) -> click.Group:
    """A meshlift command group: ``-h``/``--help``, ``--debug`` and ``--version``."""

    @click.group("cli", help=about, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
    @click.version_option(package_name="meshlift")
    def group(debug: bool) -> None:
        if debug:
            enable_debug()

    return group


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


def run_console(group: click.Group, *handled: type[BaseException]) -> None:
    """Run ``group`` as a console entry point: usage errors exit 2, ^C 130, ``handled`` errors
    with their own code."""

    @exits_on_errors(*handled)
    def run() -> None:
        group.main(standalone_mode=False)

    try:
        run()
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
