"""``mirror``: the command group and the console entry point mapping errors to exit codes."""

from __future__ import annotations

import sys

import click

from mirror.cli.airgapcmds import inspect_command, inventory, load, save
from mirror.cli.copycmds import list_command, lock_command, sync, verify
from mirror.cli.options import enable_debug, run_console
from mirror.errors import MirrorError

# httpx imports its own command-line client (and rich's syntax highlighting with it) unless
# that import fails, which it handles; mirror never uses it, and every start-up saves ~40 ms.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="meshlift")
def cli(debug: bool) -> None:
    """Mirror NGINX Service Mesh images into a private registry, or across an air gap."""
    if debug:
        enable_debug()


for _command in (list_command, sync, verify, lock_command, save, load, inspect_command, inventory):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    run_console(cli, MirrorError)
