"""Where the chart comes from: ``--chart PATH|URL|oci://REF``, else the lock's chart in R.

A chart in a registry is an OCI artifact as ``helm push`` makes it: a config of type
``application/vnd.cncf.helm.config.v1+json`` and one layer holding the chart's ``.tgz``.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from deploy.chart.render import ChartInput
from deploy.errors import InputError
from mirror.errors import DigestMismatch, InvalidReference
from mirror.image.digest import sha256_digest
from mirror.image.lock import ChartEntry
from mirror.image.mediatypes import HELM_CHART_LAYER, HELM_CONFIG
from mirror.image.reference import Reference, RegistryServer, flatten_destination, parse_reference
from mirror.net.credentials import Credentials
from mirror.net.hosts import HostOptions
from mirror.run import PrivateRegistry, open_registries

MAX_CHART_BYTES = 64 * 1024 * 1024
OCI_SCHEME = "oci://"


def pull_chart(
    ref: Reference,
    server: RegistryServer,
    credentials: Credentials | None,
    hosts: HostOptions,
    digest: str | None = None,
) -> bytes | None:
    """The ``.tgz`` of the Helm chart at ``ref`` (None if no such tag), its digest verified.

    The deploy credentials are used for ``server``'s host; other hosts use the usual sources.
    ``digest``: the layer digest the lock expects.
    """
    with open_registries(hosts, PrivateRegistry(server, credentials)) as transport:
        if transport.head_manifest(ref) is None:
            return None
        manifest = transport.get_manifest(ref, None)
        layers = [d for d in manifest.layers if d.media_type == HELM_CHART_LAYER]
        config = manifest.config
        if config is None or config.media_type != HELM_CONFIG or len(layers) != 1:
            raise InputError(f"{ref}: not a Helm chart (no {HELM_CONFIG} with one chart layer)")
        (layer,) = layers
        if digest and layer.digest != digest:
            raise DigestMismatch(
                f"{ref}: the chart's digest is {layer.digest}, the lock has {digest}"
            )
        if layer.size > MAX_CHART_BYTES:
            raise InputError(f"{ref}: chart layer of {layer.size} bytes is too large")
        with transport.open_blob(ref, layer) as chunks:
            data = b"".join(chunks)
    if sha256_digest(data) != layer.digest:
        raise DigestMismatch(f"{ref}: chart layer does not hash to {layer.digest}")
    return data


def _download(url: str, hosts: HostOptions) -> bytes:
    verify: bool | str = hosts.ca_file or True
    try:
        response = httpx.get(url, follow_redirects=True, timeout=60.0, verify=verify)
    except httpx.HTTPError as exc:
        raise InputError(f"--chart {url}: cannot download: {exc}") from None
    if response.status_code != 200:
        raise InputError(f"--chart {url}: HTTP {response.status_code}")
    return response.content


def chart_from_flag(
    value: str, server: RegistryServer, credentials: Credentials | None, hosts: HostOptions
) -> ChartInput:
    """The chart ``--chart`` names: a directory, a ``.tgz``, a URL or ``oci://host/path:version``."""
    if value.startswith(OCI_SCHEME):
        try:
            ref = parse_reference(value.removeprefix(OCI_SCHEME))
        except InvalidReference as exc:
            raise InputError(f"--chart {value}: {exc}") from None
        data = pull_chart(ref, server, credentials, hosts)
        if data is None:
            raise InputError(f"--chart {value}: no such chart in the registry")
        return ChartInput(value, data=data)
    if value.startswith(("http://", "https://")):
        return ChartInput(value, data=_download(value, hosts))
    if not Path(value).exists():
        raise InputError(f"--chart {value}: no such file or directory")
    return ChartInput(value, path=value)


def chart_from_lock(
    charts: tuple[ChartEntry, ...],
    server: RegistryServer,
    credentials: Credentials | None,
    hosts: HostOptions,
) -> ChartInput:
    """The lock's chart, pulled from the private registry; an InputError saying how to get one."""
    how = "give --chart PATH|URL|oci://REF (or rendered YAML with --manifests)"
    if not charts:
        raise InputError(f"no chart to deploy: the lock lists no [[charts]]; {how}")
    chart = charts[0]
    ref = flatten_destination(chart.source, server)
    data = pull_chart(ref, server, credentials, hosts, chart.digest)
    if data is None:
        raise InputError(
            f"no chart to deploy: {chart.name} {chart.version} is not in the registry ({ref});"
            f" `mirror sync --registry-server {server}` pushes it there, or {how}"
        )
    return ChartInput(f"oci://{ref}", data=data)
