"""Helm charts as one more locked artifact: the source transport that serves a chart as the OCI
artifact ``helm push`` makes, and the chart side of sync, verify and lock.

A chart from a classic repository is fetched (``index.yaml``, then the ``.tgz``, checked against
the lock's digest and the index's) and offered to the one copy algorithm as an OCI manifest
synthesised from the archive; a chart in an OCI registry is read from there as it is. Either
way the copy, the destinations (registry or OCI layout) and the report are those of images.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

from mirror.copy import CopyJob, ImageCopier, run_parallel
from mirror.errors import ChartError, Interrupted, MirrorError, NotFound
from mirror.helmchart import ChartArtifact, chart_artifact, chart_layer
from mirror.helmrepo import ChartRepositories
from mirror.lock import ChartEntry
from mirror.manifest import Descriptor, Manifest
from mirror.reference import Reference, RegistryServer, flatten_destination
from mirror.registry import RegistryTransport
from mirror.report import ImageResult
from mirror.retry import retries_reported_to
from mirror.transport import ImageSource

_CHUNK = 1024 * 1024


def plan_chart_jobs(
    charts: Sequence[ChartEntry], server: RegistryServer | None
) -> dict[CopyJob, ChartEntry]:
    """A copy job per chart, to ``R/<name>:<version>`` (or its own name without a server)."""
    return {
        CopyJob(c.source, flatten_destination(c.source, server) if server else c.source): c
        for c in charts
    }


def chart_in_place(placed: ImageSource, ref: Reference, digest: str) -> str | None:
    """The digest of the manifest at ``ref`` if it is a chart whose archive is ``digest``."""
    try:
        manifest = placed.get_manifest(ref, None)
    except NotFound:
        return None
    layer = chart_layer(manifest)
    return manifest.digest if layer is not None and layer.digest == digest else None


class ChartSource:
    """Locked charts as the source of a copy, each under its ``ChartEntry.source`` name."""

    name = "chart"

    def __init__(self, registry: RegistryTransport, charts: Sequence[ChartEntry]) -> None:
        self.registry = registry
        self.repositories = ChartRepositories(registry.client)
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
            return self.registry.head_manifest(ref)
        manifest = self.artifact(chart).manifest
        return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """The chart's manifest, its archive checked against the lock."""
        chart = self.chart(ref)
        if chart.oci is not None:
            return self._checked(chart, self.registry.get_manifest(ref, digest))
        manifest = self.artifact(chart).manifest
        if digest not in (None, manifest.digest):
            raise NotFound(f"{ref}: the chart's manifest is {manifest.digest}, not {digest}")
        return manifest

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """The config or the archive (or, for an OCI chart, the registry's blob)."""
        chart = self.chart(ref)
        if chart.oci is not None:
            with self.registry.open_blob(ref, desc) as chunks:
                yield chunks
            return
        data = self.artifact(chart).blob(desc.digest)
        if data is None:
            raise NotFound(f"{ref}: the chart has no blob {desc.digest}")
        yield (data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK))


class ChartCopier:
    """Copies charts with the one copy algorithm; with ``placed`` (the destination, read back),
    a chart whose archive digest is known and already there costs one manifest GET there."""

    def __init__(
        self, copier: ImageCopier, source: ChartSource, placed: ImageSource | None = None
    ) -> None:
        self.copier = copier
        self.source = source
        self.placed = placed

    @classmethod
    def beside(
        cls, images: ImageCopier, source: ChartSource, placed: ImageSource | None = None
    ) -> ChartCopier:
        """A chart copier to the destination of ``images``, sharing its events and blob ledger.

        A chart carries no cosign attachments or signatures here (Helm signs charts with a
        ``.prov`` file, which a chart repository serves apart), so none are looked up.
        """
        options = replace(images.options, attachments=False, verify_keys=())
        copier = ImageCopier(source, images.destination, images.events, options, images.ledger)
        return cls(copier, source, placed)

    def _expected(self, chart: ChartEntry) -> str | None:
        """The archive digest to look for at the destination without fetching the archive."""
        if chart.digest is not None or chart.oci is not None:
            return chart.digest
        return self.source.repositories.find(chart).digest

    def _present(self, job: CopyJob, chart: ChartEntry) -> ImageResult | None:
        if self.placed is None:
            return None
        try:
            expected = self._expected(chart)
            found = chart_in_place(self.placed, job.destination, expected) if expected else None
        except Interrupted:
            raise
        except MirrorError:  # the copy meets the same fault and reports it
            return None
        if found is None:
            return None
        result = ImageResult(str(job.source), str(job.destination), "present", found, expected)
        self.copier.events.started(job)
        self.copier.events.finished(job, result)
        return result

    def copy(self, job: CopyJob) -> ImageResult:
        """Copy one chart (failures are caught into the result, as for images)."""
        chart = self.source.chart(job.source)
        retries: list[BaseException] = []
        with retries_reported_to(retries.append):
            present = self._present(job, chart)
        result = present or self.copier.copy(job)
        result.retries += len(retries)
        result.kind = "chart"
        result.source_digest = self.source.known_digest(chart)
        return result


def copy_with_charts(
    images: ImageCopier,
    planned: Sequence[CopyJob],
    charts: ChartCopier | None,
    chart_jobs: Sequence[CopyJob],
    jobs: int,
) -> list[ImageResult]:
    """Images and charts copied together, ``jobs`` at once; results in order, images first."""
    todo = [*planned, *chart_jobs]
    is_chart = set(chart_jobs)

    def copy(job: CopyJob) -> ImageResult:
        if charts is not None and job in is_chart:
            return charts.copy(job)
        return images.copy(job)

    return run_parallel(copy, todo, jobs, images.options.cancel, "image")


def verify_chart(
    source: ChartSource, placed: ImageSource, job: CopyJob, chart: ChartEntry
) -> ImageResult:
    """Whether the destination holds the chart with the archive the lock (or source) names."""
    result = ImageResult(str(job.source), str(job.destination), kind="chart")
    try:
        expected = chart.digest or source.current_digest(chart)
        result.source_digest = expected
        result.digest = chart_in_place(placed, job.destination, expected)
        if result.digest is None:
            raise NotFound(f"{job.destination}: missing, or not the chart with archive {expected}")
        result.status = "present"
    except MirrorError as exc:
        result.status, result.error = "failed", str(exc)
    return result
