"""``deploy status``: the mesh's objects and rollouts, the Secret's namespaces, foreign images."""

from __future__ import annotations

import sys
from typing import Any

import click

from deploy.cli.options import cluster_options, connect, handled, mesh_namespace_option


@click.command()
@mesh_namespace_option
@cluster_options
@handled
def status(**params: Any) -> None:
    """Show the mesh's objects, where the Secret is, and images not from the registry.

    Exit 1 when the mesh is not deployed, a workload has not rolled out, or an image does
    not come from the registry.
    """
    from deploy.plan import check_namespace
    from deploy.status import mesh_status

    namespace = check_namespace(params["namespace"])
    with connect(params) as cluster:
        state = mesh_status(cluster, namespace)
    record = state.record
    if record is None:
        click.echo(f"no mesh deployed by meshlift in {namespace}")
    else:
        public = "disabled" if record.disable_public_images else "enabled"
        click.echo(
            f"mesh in {namespace} from {record.registry_server} (image tag {record.image_tag},"
            f" {record.environment}, public images {public})"
        )
    click.echo(f"objects: {len(state.objects)}")
    for obj in state.objects:
        click.echo(f"  {obj.description}" + (f"  {obj.rollout}" if obj.rollout else ""))
    click.echo(f"registry Secret in: {', '.join(state.secret_namespaces) or 'no namespace'}")
    if state.foreign_images:
        click.echo("images not from the registry:")
        for use in state.foreign_images:
            click.echo(f"  {use.image}  ({use.where}, {use.place})")
    elif record is not None:
        click.echo("images not from the registry: none")
    if not state.healthy:
        sys.exit(1)
