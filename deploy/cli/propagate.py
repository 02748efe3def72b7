"""``deploy propagate``: the registry Secret copied where injected workloads need it."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from deploy.cli.options import cluster_options, connect, handled
from deploy.labels import SECRET_NAME

if TYPE_CHECKING:
    from deploy.cluster.propagate import Propagated


@click.command()
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Copy the Secret into NS (repeatable).",
)
@click.option(
    "--all-injected",
    is_flag=True,
    help="Also every namespace labelled for injection or running pods with the mesh sidecar.",
)
@click.option("--watch", is_flag=True, help="Keep propagating as namespaces appear, until Ctrl-C.")
@click.option(
    "--mesh-namespace",
    default="nginx-mesh",
    show_default=True,
    metavar="NS",
    help="Where the Secret to copy is.",
)
@cluster_options
@handled
def propagate(**params: Any) -> None:
    """Copy the registry Secret where injected workloads need it, and use it there."""
    from deploy.chart.settings import check_namespace
    from deploy.cluster.propagate import propagate, watch_and_propagate
    from deploy.errors import InputError

    if not params["namespaces"] and not params["all_injected"]:
        raise InputError("give --namespace NS (repeatable) or --all-injected")
    mesh_namespace = check_namespace(params["mesh_namespace"], "--mesh-namespace")
    for namespace in params["namespaces"]:
        check_namespace(namespace)
    failed: list[Propagated] = []

    def show(result: Propagated) -> None:
        if result.error:
            failed.append(result)
            click.echo(f"failed     {result.namespace}: {result.error}", err=True)
        else:
            click.echo(
                f"{result.secret:<10} Secret {result.namespace}/{SECRET_NAME};"
                f" default service account: pull secret {result.service_account}"
            )

    with connect(params) as cluster:
        if params["watch"]:
            stop = threading.Event()
            try:
                watch_and_propagate(
                    cluster,
                    mesh_namespace,
                    params["namespaces"],
                    params["all_injected"],
                    show,
                    stop,
                )
            except KeyboardInterrupt:
                stop.set()
                click.echo("stopped watching", err=True)
            return
        for result in propagate(
            cluster, mesh_namespace, params["namespaces"], params["all_injected"]
        ):
            show(result)
    if failed:
        sys.exit(1)
