"""The ``deploy`` group and console entry point: each command, and click's errors as exit codes."""

from __future__ import annotations

import sys

import click

from deploy.cli.apply import apply
from deploy.cli.propagate import propagate
from deploy.cli.remove import remove
from deploy.cli.render import render
from deploy.cli.status import status
from mirror.cli.options import enable_debug


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="meshlift")
def cli(debug: bool) -> None:
    """Deploy NGINX Service Mesh from your private registry, and remove it again."""
    if debug:
        enable_debug()


for _command in (apply, render, propagate, remove, status):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
