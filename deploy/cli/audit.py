"""``deploy audit``: every container the mesh's Pods run, against the private registry."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

import click

from deploy.cli.options import (
    cluster_options,
    connect,
    handled,
    hosts_from,
    mesh_namespace_option,
    releases_from,
)
from mirror.cli.options import (
    ca_file_option,
    credentials_from,
    insecure_registry_option,
    lock_option,
    output_option,
    registry_credential_options,
    registry_server_option,
)

if TYPE_CHECKING:
    from deploy.cluster.audit import Audit

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _short(match: re.Match[str]) -> str:
    """A digest cut to 12 hex digits for the table (JSON keeps it whole)."""
    return match.group(0)[:19] + "…"


@click.command()
@registry_server_option()
@registry_credential_options
@mesh_namespace_option
@click.option("--all-namespaces", is_flag=True, help="Audit every namespace, not only the mesh's.")
@click.option(
    "--image-tag",
    help="The mesh's image tag: older sidecars and init containers are findings (default: the"
    " deployed release's registry.imageTag, else 2.0.0).",
)
@lock_option
@insecure_registry_option
@ca_file_option
@output_option
@cluster_options
@handled
def audit(**params: Any) -> None:
    """Check what every Pod runs: images not under --registry-server, digests other than the
    registry's or the lock's, stale injected sidecars, images not pulled yet.

    Reads the mesh's namespace and the namespaces labelled for injection (or all of them);
    sends the registry HEAD requests (and a GET of each narrowed index the lock names: its
    digest is R's own, not the lock's). Exit 1 with findings.
    """
    from deploy.chart.settings import check_namespace
    from deploy.cluster.audit import Expectations, audited_namespaces, registry_digests
    from deploy.cluster.audit import audit as run_audit
    from deploy.release.preflight import held_digests
    from mirror.image.lock import load_lock, resolve_lock_path
    from mirror.image.reference import parse_registry_server

    server = parse_registry_server(params["registry_server"])
    namespace = check_namespace(params["namespace"])
    credentials = credentials_from(params)
    hosts = hosts_from(params)
    entries = load_lock(resolve_lock_path(params["lock_path"])).entries
    held = held_digests(entries, server, credentials, hosts)
    tag = params["image_tag"] or _release_tag(params)
    expect = Expectations.from_lock(server, tag, entries, held)
    with connect(params) as cluster, registry_digests(server, credentials, hosts) as digests:
        namespaces = None if params["all_namespaces"] else audited_namespaces(cluster, namespace)
        result = run_audit(cluster, namespaces, expect, digests)
    print_audit(result, params["output"])
    if result.findings:
        sys.exit(1)


def _release_tag(params: dict[str, Any]) -> str:
    """The image tag the deployed release runs, as Helm stored its values."""
    from deploy.chart.settings import DEFAULT_IMAGE_TAG

    with releases_from(params, params["namespace"]) as releases:
        if not releases.history():
            return DEFAULT_IMAGE_TAG
        registry = releases.user_values().get("registry") or {}
    return str(registry.get("imageTag") or DEFAULT_IMAGE_TAG)


def print_audit(result: Audit, output: str) -> None:
    """The audit as JSON, or a headline and a table of findings."""
    if output == "json":
        import json

        click.echo(
            json.dumps(
                {
                    "registry": result.registry,
                    "namespaces": result.namespaces,
                    "containers": len(result.containers),
                    "findings": [f.as_dict() for f in result.findings],
                },
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    pods = len({(c.namespace, c.pod) for c in result.containers})
    headline = (
        f"{len(result.containers)} containers in {pods} pods"
        f" ({', '.join(result.namespaces) or 'no namespace'}) from {result.registry}:"
        f" {len(result.findings) or 'no'} finding{'s' * (len(result.findings) != 1)}"
    )
    console = Console(markup=False, highlight=False)
    if not console.is_terminal:  # pipes and logs get whole lines
        console = Console(width=200, markup=False, highlight=False)
    console.print(headline)
    if not result.findings:
        return
    table = Table()
    for column in ("pod", "workload", "container", "image", "finding"):
        table.add_column(column, overflow="fold")
    for finding in result.findings:
        c = finding.container
        table.add_row(
            f"{c.namespace}/{c.pod}",
            c.workload,
            f"{c.kind} {c.name}",
            c.image,
            f"{finding.problem}: {_DIGEST.sub(_short, finding.detail)}",
        )
    console.print(table)
