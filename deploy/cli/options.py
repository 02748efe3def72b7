"""deploy's options (the plan's, the cluster's), composed with mirror's shared ones."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.console import exits_on_errors
from mirror.cli.options import (
    Duration,
    compose_options,
    credentials_from,
    lock_option,
    registry_credential_options,
)
from mirror.errors import MirrorError
from mirror.image.lock import ENVIRONMENTS

if TYPE_CHECKING:
    from deploy.chart.settings import Settings
    from deploy.chart.values import ValueFlags
    from deploy.cluster.client import Cluster
    from deploy.postrender.plan import Plan
    from deploy.release.helm import Releases
    from mirror.net.hosts import HostOptions

handled = exits_on_errors(MirrorError)
cluster_options = compose_options(
    click.option(
        "--kubeconfig",
        metavar="FILE",
        help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster).",
    ),
    click.option(
        "--context", metavar="NAME", help="Kubeconfig context (default: its current one)."
    ),
)
mesh_namespace_option = click.option(
    "--namespace",
    default="nginx-mesh",
    show_default=True,
    metavar="NS",
    help="The mesh's namespace.",
)
plan_options = compose_options(
    click.option(
        "--registry-server",
        required=True,
        metavar="HOST[:PORT][/PATH]",
        help="The private registry the images come from (and the Secret is for).",
    ),
    registry_credential_options,
    click.option(
        "--disable-public-images",
        is_flag=True,
        help="Take every image from --registry-server, not only the mesh's own.",
    ),
    click.option(
        "--image-tag",
        default="2.0.0",
        show_default=True,
        help="Tag of the NGINX Service Mesh images.",
    ),
    mesh_namespace_option,
    click.option(
        "--environment",
        type=click.Choice(ENVIRONMENTS),
        default="kubernetes",
        show_default=True,
        help="The chart's environment value (openshift adds the SPIFFE CSI driver).",
    ),
    lock_option,
    click.option(
        "--chart",
        metavar="PATH|URL|oci://REF",
        help="The Helm chart to render: directory, .tgz, URL or chart in a registry"
        " (default: the lock's chart, from --registry-server).",
    ),
    click.option(
        "-f",
        "--values",
        "values_files",
        multiple=True,
        metavar="FILE",
        help="Chart values from a YAML file, as helm's -f (repeatable).",
    ),
    click.option(
        "--set",
        "set_values",
        multiple=True,
        metavar="KEY=VAL",
        help="Chart values as helm's --set (repeatable).",
    ),
    click.option(
        "--set-string",
        multiple=True,
        metavar="KEY=VAL",
        help="Chart values kept as strings, as helm's --set-string (repeatable).",
    ),
    click.option(
        "--set-file",
        multiple=True,
        metavar="KEY=PATH",
        help="Chart values read from files, as helm's --set-file (repeatable).",
    ),
    click.option(
        "--set-json",
        multiple=True,
        metavar="KEY=JSON",
        help="Chart values as JSON, as helm's --set-json (repeatable).",
    ),
    click.option(
        "--set-literal",
        multiple=True,
        metavar="KEY=VAL",
        help="A chart value taken verbatim, as helm's --set-literal (repeatable).",
    ),
    click.option(
        "--manifests",
        "manifest_paths",
        multiple=True,
        metavar="PATH",
        help="Already-rendered YAML instead of a chart: file, directory or - (repeatable).",
    ),
    click.option(
        "--pin-digests/--no-pin-digests",
        default=True,
        show_default=True,
        help="Use images by the digests the lock pins (R/name:tag@sha256:...).",
    ),
    click.option(
        "--enforce-registry",
        type=click.Choice(["warn", "deny"]),
        help="Add to the release an admission policy (Kubernetes 1.30+) that warns about, or"
        " refuses, any Pod of the mesh's or an injected namespace with an image not under"
        " --registry-server/.",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Print what would be applied (Secret data redacted); send nothing to the cluster.",
    ),
    click.option(
        "--skip-preflight", is_flag=True, help="Do not check that every image is in the registry."
    ),
    click.option(
        "--insecure-registry",
        "insecure",
        multiple=True,
        metavar="HOST[:PORT]",
        help="Allow plain HTTP or unverified TLS for HOST in preflight (repeatable).",
    ),
    click.option(
        "--ca-file",
        type=click.Path(dir_okay=False),
        help="Extra CA certificate (PEM) to trust in preflight.",
    ),
    cluster_options,
)
wait_option = click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until every resource is ready (Helm's watcher); hooks are always waited for.",
)
timeout_option = click.option(
    "--timeout",
    type=Duration(),
    default="5m",
    show_default=True,
    help="How long Helm may take: hooks, rollouts, waiting (as helm's --timeout).",
)


def hosts_from(params: dict[str, Any]) -> HostOptions:
    """The registry connection options of ``--insecure-registry`` and ``--ca-file``."""
    from deploy.errors import InputError
    from mirror.net.hosts import HostOptions, parse_insecure

    ca_file = params["ca_file"]
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        raise InputError(f"--ca-file {ca_file}: file not found or not readable")
    return HostOptions(insecure=parse_insecure(params["insecure"]), ca_file=ca_file)


def settings_from(params: dict[str, Any]) -> Settings:
    """The validated settings the :data:`plan_options` describe (no cluster contacted)."""
    from deploy.chart.settings import Settings
    from deploy.errors import InputError

    if params["registry_password_stdin"] and "-" in params["manifest_paths"]:
        raise InputError("--registry-password-stdin and --manifests - both want standard input")
    return Settings.parse(
        params["registry_server"],
        credentials_from(params),
        params["disable_public_images"],
        params["image_tag"],
        params["namespace"],
        params["environment"],
        params["pin_digests"],
        params["enforce_registry"],
    )


def values_from(params: dict[str, Any]) -> ValueFlags:
    """Helm's value flags as given."""
    from deploy.chart.values import ValueFlags

    return ValueFlags(
        params["values_files"],
        params["set_values"],
        params["set_string"],
        params["set_file"],
        params["set_json"],
        params["set_literal"],
    )


def plan_from(params: dict[str, Any], settings: Settings | None = None, **render: Any) -> Plan:
    """The post-rendered plan the :data:`plan_options` describe; ``render``: see render_chart."""
    from deploy.postrender.plan import build_plan, load_rendered
    from deploy.release.preflight import held_digests
    from mirror.image.lock import load_lock, resolve_lock_path

    settings = settings or settings_from(params)
    lock = load_lock(resolve_lock_path(params["lock_path"]))
    hosts = hosts_from(params)
    rendered = load_rendered(
        settings,
        lock,
        params["manifest_paths"],
        params["chart"],
        values_from(params),
        hosts,
        **render,
    )
    held = {}
    if settings.pin_digests:
        held = held_digests(lock.entries, settings.server, settings.credentials, hosts)
    return build_plan(rendered, lock.entries, settings, held)


def connect(params: dict[str, Any]) -> Cluster:
    """The cluster the :data:`cluster_options` name."""
    from deploy.cluster.client import Cluster

    return Cluster.connect(params["kubeconfig"], params["context"])


def releases_from(params: dict[str, Any], namespace: str) -> Releases:
    """The mesh's Helm release in ``namespace`` of the cluster the options name."""
    from deploy.cluster.client import kubeconfig_path
    from deploy.release.helm import Releases

    # Helm's client-go reads the environment once, when the library loads: the path is given.
    return Releases(kubeconfig_path(params["kubeconfig"]), params["context"], namespace)
