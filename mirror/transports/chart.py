"""Locked Helm charts as a copy source: each served as the OCI artifact ``helm push`` makes.

A chart from a classic repository is fetched (``index.yaml``, then the ``.tgz``, checked against
the lock's digest and the index's) and offered as an OCI manifest synthesised from the archive;
a chart in an OCI registry is read from there (through ``oci``, a registry source) as it is.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

from mirror.errors import ChartError, NotFound
from mirror.image.helmchart import ChartArtifact, chart_artifact, chart_layer
from mirror.image.lock import ChartEntry
from mirror.image.manifest import Descriptor, Manifest
from mirror.image.reference import Reference
from mirror.transports.base import ImageSource
from mirror.transports.helmrepo import ChartRepositories

_CHUNK = 1024 * 1024


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
        yield (data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK))
