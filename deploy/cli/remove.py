"""``deploy remove``: Helm's uninstall, then what nginx-meshctl remove does and meshlift added."""

from __future__ import annotations

from typing import Any

import click

from deploy.cli.options import (
    cluster_options,
    connect,
    handled,
    mesh_namespace_option,
    releases_from,
    timeout_option,
)


@click.command()
@mesh_namespace_option
@timeout_option
@click.option("--keep-crds", is_flag=True, help="Keep the mesh's CRDs (and custom resources).")
@cluster_options
@handled
def remove(**params: Any) -> None:
    """Uninstall the release (its hooks as Helm runs them), then the CRDs, every labelled
    registry Secret, the pull-secret entries, and the namespace if nothing else is in it."""
    from deploy.chart.settings import check_namespace
    from deploy.release.actions import remove_release

    namespace = check_namespace(params["namespace"])
    with connect(params) as cluster, releases_from(params, namespace) as releases:
        had, removal = remove_release(
            cluster,
            releases,
            timeout=params["timeout"],
            keep_crds=params["keep_crds"],
            on_deleted=lambda d: click.echo(f"deleted    {d}"),
        )
    if had:
        click.echo(f"uninstalled Helm release {releases.name} in {namespace}")
    else:
        click.echo(f"no Helm release {releases.name} in {namespace}")
    for cleaned in removal.cleaned:
        click.echo(f"cleaned    {cleaned}")
    for kept in removal.kept:
        click.echo(f"kept       {kept}")
    for workload in removal.injected:
        click.echo(f"re-roll    {workload}: it still runs the mesh's sidecar")
    click.echo(f"removed the release and {len(removal.deleted)} more objects")
