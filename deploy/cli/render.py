"""``deploy render``: what the release would hold, offline: ``helm template``, then post-render."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deploy.cli.options import handled, plan_from, plan_options

if TYPE_CHECKING:
    from deploy.postrender.plan import Plan


@click.command()
@plan_options
@click.option(
    "--kube-version",
    metavar="VERSION",
    help="Kubernetes version to check the chart's kubeVersion against (as helm template's).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="DIR|-",
    help="Write one file per object into DIR (new or empty), or all of them to stdout (-).",
)
@handled
def render(**params: Any) -> None:
    """Print what apply would store as the release (Secret data redacted), the hooks apart.

    Takes apply's options so one command line can switch verbs; it contacts no cluster, and
    the registry only to pull the lock's chart. On stdout the hooks follow, commented out
    (Helm runs them, a pipe to kubectl would not); in DIR they go under ``hooks/``.
    """
    from deploy.chart.kubeversion import check_kube_version
    from deploy.errors import InputError

    plan = plan_from(params)
    if params["kube_version"]:
        check_kube_version(plan.files.metadata if plan.files else {}, params["kube_version"])
    if params["output"] == "-":
        print_plan(plan)
        return
    directory = Path(params["output"])
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"--output {directory}: not an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    redacted = plan.redacted()
    objects = [o for o in redacted if not _is_hook(o)]
    hooks = [o for o in redacted if _is_hook(o)]
    _write_numbered(directory, objects)
    if hooks:
        (directory / "hooks").mkdir()
        _write_numbered(directory / "hooks", hooks)
    click.echo(
        f"wrote {len(objects)} manifests to {directory} and {len(hooks)} hooks to"
        f" {directory / 'hooks'}",
        err=True,
    )


def _is_hook(obj: dict[str, Any]) -> bool:
    from deploy.postrender.plan import is_hook

    return is_hook(obj)


def _write_numbered(directory: Path, objects: list[dict[str, Any]]) -> None:
    from deploy.chart.manifests import dump_documents

    for number, obj in enumerate(objects, start=1):
        name = f"{number:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        (directory / name).write_text(dump_documents([obj]), encoding="utf-8")


def print_plan(plan: Plan) -> None:
    """The CRDs and objects, then the hooks commented out (Helm runs them at their phase)."""
    from deploy.chart.manifests import dump_documents

    redacted = plan.redacted()
    click.echo(dump_documents([o for o in redacted if not _is_hook(o)]), nl=False)
    hooks = [o for o in redacted if _is_hook(o)]
    if hooks:
        click.echo("# Helm hooks: Helm runs them at their phase; not for kubectl apply.")
        text = dump_documents(hooks)
        click.echo("".join(f"# {line}\n" if line else "#\n" for line in text.splitlines()))
