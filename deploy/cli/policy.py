"""``deploy admission-policy``: print the policy admitting mesh Pods only from the registry."""

from __future__ import annotations

from typing import Any

import click

from deploy.cli.options import handled, mesh_namespace_option
from mirror.cli.options import registry_server_option


@click.command("admission-policy")
@registry_server_option()
@mesh_namespace_option
@click.option(
    "--mode",
    type=click.Choice(["warn", "deny"]),
    default="warn",
    show_default=True,
    help="warn: admit with a warning and an audit annotation; deny: refuse the Pod.",
)
@handled
def admission_policy(**params: Any) -> None:
    """Print the ValidatingAdmissionPolicy and its binding (Kubernetes 1.30 or later) that
    check every Pod of the mesh's namespace and of namespaces labelled for injection: each
    container, init container and ephemeral container image must be under --registry-server/.

    Sends nothing: apply the output with kubectl, or add it to the release.
    """
    from deploy.chart.manifests import dump_documents
    from deploy.chart.settings import check_namespace
    from deploy.postrender.policy import admission_policy as build
    from mirror.image.reference import parse_registry_server

    server = parse_registry_server(params["registry_server"])
    namespace = check_namespace(params["namespace"])
    click.echo(dump_documents(build(server, namespace, params["mode"])), nl=False)
