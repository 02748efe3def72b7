"""Helm charts as one more locked artifact: the chart side of sync, verify and save.

Charts are read by ``transports.chart.ChartSource`` and copied by the one copy algorithm, so
the destinations (registry or OCI layout) and the report are those of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mirror.copy import ImageCopier
from mirror.errors import Interrupted, MirrorError, NotFound
from mirror.image.helmchart import chart_layer
from mirror.image.lock import ChartEntry
from mirror.image.reference import Reference, RegistryServer, flatten_destination
from mirror.net.retry import retries_reported_to
from mirror.report import ImageResult
from mirror.run import CopyJob, run_parallel
from mirror.transports.base import ImageSource
from mirror.transports.chart import ChartRepositories, ChartSource
from mirror.transports.registry import RegistryTransport


def plan_chart_jobs(
    charts: Sequence[ChartEntry], server: RegistryServer | None
) -> dict[CopyJob, ChartEntry]:
    """A copy job per chart, to ``R/<name>:<version>`` (or its own name without a server)."""
    return {
        CopyJob(c.source, flatten_destination(c.source, server) if server else c.source): c
        for c in charts
    }


def chart_source(registry: RegistryTransport, charts: Sequence[ChartEntry]) -> ChartSource:
    """The locked charts read from ``registry`` (OCI charts) or their classic repositories."""
    return ChartSource(registry, ChartRepositories(registry.client), charts)


def chart_in_place(placed: ImageSource, ref: Reference, digest: str) -> str | None:
    """The digest of the manifest at ``ref`` if it is a chart whose archive is ``digest``."""
    try:
        manifest = placed.get_manifest(ref, None)
    except NotFound:
        return None
    layer = chart_layer(manifest)
    return manifest.digest if layer is not None and layer.digest == digest else None


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
