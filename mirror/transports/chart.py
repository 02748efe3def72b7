"""Locked Helm charts as a copy source: each served as the OCI artifact ``helm push`` makes.

A chart from a classic repository is fetched (``index.yaml``, then the ``.tgz``, checked against
the lock's digest and the index's) and offered as an OCI manifest synthesised from the archive;
a chart in an OCI registry is read from there (through ``oci``, a registry source) as it is.

A chart repository is reached like a registry (the same client, so ``--endpoint``, TLS rules,
credentials and retries apply): with ``--endpoint HOST=URL`` every URL on HOST is fetched under
URL, whose path is a prefix. Redirects are followed (archives often live in object storage).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from mirror.errors import ChartError, InputError, NotFound
from mirror.image.digest import sha256_digest
from mirror.image.helmchart import (
    MAX_CHART_BYTES,
    ChartArtifact,
    chart_artifact,
    chart_layer,
    load_yaml,
)
from mirror.image.lock import ChartEntry
from mirror.image.manifest import Descriptor, Manifest
from mirror.image.reference import Reference
from mirror.net.client import RegistryClient
from mirror.transports.base import CHUNK, ImageSource

MAX_INDEX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class IndexedChart:
    """Where a repository's index says a chart version is, and the digest it lists."""

    url: str
    digest: str | None


def parse_index(raw: bytes, where: str) -> dict[tuple[str, str], IndexedChart]:
    """Every chart version of an ``index.yaml``, its URL resolved against ``where``."""
    doc = load_yaml(raw, f"{where}: not a chart repository index")
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise ChartError(f"{where}: not a chart repository index (no entries)")
    found: dict[tuple[str, str], IndexedChart] = {}
    for name, versions in entries.items():
        for item in versions if isinstance(versions, list) else []:
            urls = item.get("urls") if isinstance(item, dict) else None
            if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
                continue
            digest = item.get("digest")
            digest = f"sha256:{digest}" if isinstance(digest, str) and digest else None
            found.setdefault(
                (name, str(item.get("version"))), IndexedChart(urljoin(where, urls[0]), digest)
            )
    return found


class ChartRepositories:
    """Reads chart repositories through a registry client; each index is fetched once a run."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._indexes: dict[str, dict[tuple[str, str], IndexedChart]] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def _locate(self, url: str) -> tuple[Reference, str]:
        """The host to reach ``url`` through and the path under its endpoint (``--endpoint``)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ChartError(f"{url}: not an http(s) URL")
        host = parts.netloc.lower()
        prefix = self.client.endpoint(host).prefix
        path = f"/{prefix}{parts.path}" if prefix else parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return Reference(host, parts.path.lstrip("/") or "/", None, None), path + query

    def _get(self, url: str, limit: int, what: str) -> bytes:
        """The body of ``url`` (at most ``limit`` bytes); faults while reading it are retried."""
        ref, path = self._locate(url)
        refused = f"{what} {url}: larger than {limit // 2**20} MiB; refused"
        try:
            return self.client.fetch_followed(ref, path, limit=limit, refused=refused)
        except NotFound:
            raise ChartError(f"{what} {url}: not found (HTTP 404)") from None

    def find(self, chart: ChartEntry) -> IndexedChart:
        """The index entry of ``chart`` (its repository's ``index.yaml`` fetched once)."""
        url = chart.index_url
        if url is None:
            raise InputError(f"{chart.source}: not from a chart repository")
        with self._lock:
            fetching = self._fetching.setdefault(url, threading.Lock())
        with fetching:
            if url not in self._indexes:
                raw = self._get(url, MAX_INDEX_BYTES, "chart repository index")
                self._indexes[url] = parse_index(raw, url)
        found = self._indexes[url].get((chart.name, chart.version))
        if found is None:
            raise ChartError(f"{url}: lists no chart {chart.name} version {chart.version}")
        return found

    def download(self, chart: ChartEntry) -> bytes:
        """The chart's ``.tgz``, checked against the lock's digest and the index's."""
        found = self.find(chart)
        archive = self._get(found.url, MAX_CHART_BYTES, "chart archive")
        actual = sha256_digest(archive)
        for wanted, whose in ((chart.digest, "the lock"), (found.digest, "index.yaml")):
            if wanted is not None and wanted != actual:
                raise ChartError(
                    f"{chart.source}: {found.url} has digest {actual}, {whose} says {wanted}"
                )
        return archive


class ChartSource:
    """Locked charts as the source of a copy, each under its ``ChartEntry.source`` name."""

    name = "chart"

    def __init__(
        self, oci: ImageSource, repositories: ChartRepositories, charts: Sequence[ChartEntry]
    ) -> None:
        self.oci = oci
        self.repositories = repositories
        self.charts = tuple(charts)
        self._charts = {c.source: c for c in charts}
        self._built: dict[Reference, ChartArtifact] = {}
        self._digests: dict[Reference, str] = {}
        self._lock = threading.Lock()

    def chart(self, ref: Reference) -> ChartEntry:
        """The locked chart named ``ref``."""
        return self._charts[ref]

    def known_digest(self, chart: ChartEntry) -> str | None:
        """The archive digest the lock pins, or that this run has seen."""
        return chart.digest or self._digests.get(chart.source)

    def artifact(self, chart: ChartEntry) -> ChartArtifact:
        """The chart's archive (downloaded once a run) and the OCI artifact made of it."""
        with self._lock:
            if chart.source not in self._built:
                archive = self.repositories.download(chart)
                built = chart_artifact(archive, str(chart.source))
                if (built.name, built.version) != (chart.name, chart.version):
                    raise ChartError(
                        f"{chart.source}: the archive holds chart {built.name} {built.version}"
                    )
                self._built[chart.source] = built
                self._digests[chart.source] = built.digest
            return self._built[chart.source]

    def current_digest(self, chart: ChartEntry) -> str:
        """The archive digest at the source now: index.yaml's (else the downloaded archive's),
        or the chart layer of the manifest an OCI registry holds."""
        if chart.oci is None:
            listed = self.repositories.find(chart).digest
            return listed or self.artifact(chart).digest
        self.get_manifest(chart.oci, None)
        return self._digests[chart.source]

    def _checked(self, chart: ChartEntry, manifest: Manifest) -> Manifest:
        """An OCI chart's manifest, refused unless it is a chart with the locked archive."""
        layer = chart_layer(manifest)
        if layer is None:
            raise ChartError(f"{chart.source}: {manifest.digest} is not a Helm chart")
        if chart.digest is not None and layer.digest != chart.digest:
            raise ChartError(
                f"{chart.source}: chart archive is {layer.digest}, the lock says {chart.digest}"
            )
        self._digests[chart.source] = layer.digest
        return manifest

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The chart's manifest descriptor (for a repository chart: of the synthesised one)."""
        chart = self.chart(ref)
        if chart.oci is not None:
            return self.oci.head_manifest(ref)
        manifest = self.artifact(chart).manifest
        return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """The chart's manifest, its archive checked against the lock."""
        chart = self.chart(ref)
        if chart.oci is not None:
            return self._checked(chart, self.oci.get_manifest(ref, digest))
        manifest = self.artifact(chart).manifest
        if digest not in (None, manifest.digest):
            raise NotFound(f"{ref}: the chart's manifest is {manifest.digest}, not {digest}")
        return manifest

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """The config or the archive (or, for an OCI chart, the registry's blob)."""
        chart = self.chart(ref)
        if chart.oci is not None:
            with self.oci.open_blob(ref, desc) as chunks:
                yield chunks
            return
        data = self.artifact(chart).blob(desc.digest)
        if data is None:
            raise NotFound(f"{ref}: the chart has no blob {desc.digest}")
        yield (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
