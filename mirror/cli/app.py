"""``mirror``: the command group and the console entry point mapping errors to exit codes."""

from __future__ import annotations

import sys

from mirror.cli.airgapcmds import inspect_command, inventory, load, save, split_command
from mirror.cli.console import command_group, run_console
from mirror.cli.copycmds import list_command, lock_command, sync, verify
from mirror.cli.nodecmds import node_config_command
from mirror.errors import MirrorError

# httpx imports its own command-line client (and rich's syntax highlighting with it) unless
# that import fails, which it handles; mirror never uses it, and every start-up saves ~40 ms.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


cli = command_group(
    "Mirror NGINX Service Mesh images into a private registry, or across an air gap."
)

for _command in (
    list_command,
    sync,
    verify,
    lock_command,
    save,
    split_command,
    load,
    inspect_command,
    inventory,
    node_config_command,
):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    run_console(cli, MirrorError)
