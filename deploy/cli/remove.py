"""``deploy remove``: what apply and propagate made deleted, the chart's delete hooks run."""

from __future__ import annotations

from typing import Any

import click

from deploy.cli.options import cluster_options, connect, handled, mesh_namespace_option
from mirror.cli.options import Duration


@click.command()
@mesh_namespace_option
@click.option(
    "--timeout",
    type=Duration(),
    default="5m",
    show_default=True,
    help="How long to wait for the chart's delete hooks.",
)
@cluster_options
@handled
def remove(**params: Any) -> None:
    """Delete what apply and propagate made; keep what others made.

    Runs the chart's pre-delete hooks first and its post-delete hooks after the deletion.
    """
    from deploy.plan import check_namespace
    from deploy.remove import remove_mesh

    namespace = check_namespace(params["namespace"])
    with connect(params) as cluster:
        removal = remove_mesh(
            cluster,
            namespace,
            lambda d: click.echo(f"deleted    {d}"),
            timeout=params["timeout"],
            on_hook=click.echo,
        )
    for cleaned in removal.cleaned:
        click.echo(f"cleaned    {cleaned}")
    for kept in removal.kept:
        click.echo(f"kept       {kept}")
    click.echo(f"removed {len(removal.deleted)} objects")
