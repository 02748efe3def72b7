"""``deploy render``: the exact manifests apply would send, to stdout or one file per object."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deploy.cli.options import handled, plan_from, plan_options

if TYPE_CHECKING:
    from deploy.plan import Plan


@click.command()
@plan_options
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="DIR|-",
    help="Write one file per object into DIR (new or empty), or all of them to stdout (-).",
)
@handled
def render(**params: Any) -> None:
    """Print the exact manifests apply would send (Secret data redacted), and the hooks apart.

    Takes apply's options so one command line can switch verbs; it contacts no cluster, and
    the registry only to pull the lock's chart. On stdout the hooks follow, commented out and
    marked by phase; in DIR they go under ``hooks/``.
    """
    from deploy.errors import InputError
    from deploy.hooks import display_order, first_phase

    plan = plan_from(params)
    if params["output"] == "-":
        print_plan(plan)
        return
    directory = Path(params["output"])
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"--output {directory}: not an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    objects = plan.redacted()
    _write_numbered(directory, objects, "")
    hooks = plan.redacted_hooks()
    if hooks:
        (directory / "hooks").mkdir()
        for hook in display_order(hooks):
            _write_numbered(directory / "hooks", [hook.obj], f"{first_phase(hook)}-")
    click.echo(
        f"wrote {len(objects)} manifests to {directory} and {len(hooks)} hooks to"
        f" {directory / 'hooks'}",
        err=True,
    )


def _write_numbered(directory: Path, objects: list[dict[str, Any]], prefix: str) -> None:
    from deploy.manifests import dump_documents

    for obj in objects:
        number = len(list(directory.iterdir())) + 1
        name = f"{prefix}{number:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        (directory / name).write_text(dump_documents([obj]), encoding="utf-8")


def print_plan(plan: Plan) -> None:
    """The objects apply sends, then the hooks commented out (never applied through a pipe)."""
    from deploy.hooks import commented
    from deploy.manifests import dump_documents

    click.echo(dump_documents(plan.redacted()), nl=False)
    hooks = plan.redacted_hooks()
    if hooks:
        click.echo("# Helm hooks: not applied with the objects above; run at their phase.")
        click.echo(commented(hooks), nl=False)
