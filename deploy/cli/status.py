"""``deploy status``: the release, its rollouts, the Secret's namespaces, foreign images."""

from __future__ import annotations

import sys
from typing import Any

import click

from deploy.cli.options import (
    cluster_options,
    connect,
    handled,
    mesh_namespace_option,
    releases_from,
)


@click.command()
@mesh_namespace_option
@cluster_options
@handled
def status(**params: Any) -> None:
    """Show the release, its objects, where the Secret is, and images not from the registry.

    Exit 1 when the mesh is not deployed, a workload has not rolled out, or an image does
    not come from the registry.
    """
    from deploy.chart.settings import check_namespace
    from deploy.release.status import mesh_status

    namespace = check_namespace(params["namespace"])
    with connect(params) as cluster, releases_from(params, namespace) as releases:
        state = mesh_status(cluster, releases)
    release = state.release
    if release is None:
        click.echo(f"no Helm release {releases.name} in {namespace}")
    else:
        click.echo(
            f"Helm release {releases.name} in {namespace}: revision {release.get('revision')},"
            f" {state.state}, chart {release.get('chart_name')}-{release.get('chart_version')},"
            f" images from {state.registry_server}"
        )
    click.echo(f"objects: {len(state.objects)}")
    for obj in state.objects:
        click.echo(f"  {obj.description}" + (f"  {obj.rollout}" if obj.rollout else ""))
    click.echo(f"registry Secret in: {', '.join(state.secret_namespaces) or 'no namespace'}")
    if state.foreign_images:
        click.echo("images not from the registry:")
        for use in state.foreign_images:
            click.echo(f"  {use.image}  ({use.where}, {use.place})")
    elif release is not None:
        click.echo("images not from the registry: none")
    if not state.healthy:
        sys.exit(1)
