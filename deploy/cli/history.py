"""``deploy history`` and ``deploy rollback``: the release's revisions, and going back to one."""

from __future__ import annotations

import json
from typing import Any

import click

from deploy.cli.options import (
    cluster_options,
    handled,
    mesh_namespace_option,
    releases_from,
    timeout_option,
)

COLUMNS = ("revision", "updated", "status", "chart", "app version", "description")


def _row(release: dict[str, Any]) -> dict[str, Any]:
    return {
        "revision": release.get("revision"),
        "updated": release.get("last_deployed") or release.get("deployed_at", ""),
        "status": release.get("status", ""),
        "chart": f"{release.get('chart_name', '')}-{release.get('chart_version', '')}",
        "app version": release.get("app_version", ""),
        "description": release.get("description", ""),
    }


@click.command()
@mesh_namespace_option
@click.option(
    "--output",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@cluster_options
@handled
def history(**params: Any) -> None:
    """The release's revisions, as helm history shows them."""
    from deploy.chart.settings import check_namespace
    from deploy.errors import DeployError

    namespace = check_namespace(params["namespace"])
    with releases_from(params, namespace) as releases:
        rows = [_row(releases.revision(int(r["revision"]))) for r in releases.history()]
    if not rows:
        raise DeployError(f"no Helm release {releases.name} in {namespace}")
    if params["output_format"] == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("\t".join(c.upper() for c in COLUMNS))
    for row in rows:
        click.echo("\t".join(str(row[c]) for c in COLUMNS))


@click.command()
@click.argument("revision", type=click.IntRange(min=1), required=False)
@mesh_namespace_option
@timeout_option
@cluster_options
@handled
def rollback(**params: Any) -> None:
    """Roll the release back to REVISION (default: the previous one), as helm rollback."""
    from deploy.chart.settings import check_namespace

    namespace = check_namespace(params["namespace"])
    with releases_from(params, namespace) as releases:
        releases.rollback(params["revision"], params["timeout"])
        latest = releases.history()[-1]
    click.echo(
        f"rolled back Helm release {releases.name} in {namespace} to revision"
        f" {params['revision'] or 'previous'}: now revision {latest.get('revision')}"
    )
