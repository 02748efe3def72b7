"""The ``deploy`` group and console entry point: each command, and click's errors as exit codes."""

from __future__ import annotations

from deploy.cli.apply import apply
from deploy.cli.audit import audit
from deploy.cli.history import history, rollback
from deploy.cli.policy import admission_policy
from deploy.cli.propagate import propagate
from deploy.cli.remove import remove
from deploy.cli.render import render
from deploy.cli.status import status
from mirror.cli.console import command_group, run_console

cli = command_group("Deploy NGINX Service Mesh from your private registry, and remove it again.")

for _command in (
    apply,
    render,
    propagate,
    remove,
    status,
    history,
    rollback,
    audit,
    admission_policy,
):
    cli.add_command(_command)


def main() -> None:
    """Console entry point."""
    run_console(cli)
