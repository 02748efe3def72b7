"""Registry-to-registry runs over a lock: sync, and resolving tags for ``mirror lock``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from mirror.chart import (
    ChartCopier,
    chart_source,
    copy_with_charts,
    plan_chart_jobs,
)
from mirror.copy import ImageCopier
from mirror.errors import NotFound
from mirror.image.lock import ChartEntry, LockEntry
from mirror.net.hosts import HostOptions
from mirror.net.retry import Cancellation
from mirror.report import Report
from mirror.run import (
    DEFAULT_JOBS,
    CopyEvents,
    CopyOptions,
    PrivateRegistry,
    Selection,
    open_registries,
    plan_jobs,
    registries_of,
    run_parallel,
)


def sync(
    selection: Selection,
    destination: PrivateRegistry,
    hosts: HostOptions,
    events: CopyEvents,
    options: CopyOptions,
) -> Report:
    """Copy every entry (and chart) from its source to the destination registry."""
    charts, jobs = selection.charts, options.jobs
    planned = plan_jobs(selection.entries, destination.server, selection.platforms)
    chart_jobs = plan_chart_jobs(charts, destination.server)
    started = time.monotonic()
    with open_registries(hosts, destination, options.policy, options.cancel, jobs) as registry:
        registry.ping(registries_of(planned, chart_jobs))
        written = registry if options.dry_run else registry.pushing()
        copier = ImageCopier(registry, written, events, options)
        charter = ChartCopier.beside(copier, chart_source(registry, charts), placed=written)
        results = copy_with_charts(copier, planned, charter, list(chart_jobs), jobs)
    command = "sync --dry-run" if options.dry_run else "sync"
    return Report(command, results, time.monotonic() - started)


def resolve_digests(
    entries: Sequence[LockEntry],
    hosts: HostOptions,
    jobs: int = DEFAULT_JOBS,
    cancel: Cancellation | None = None,
) -> dict[str, str]:
    """Each entry's current source digest, keyed by its source reference (for ``mirror lock``)."""
    cancel = cancel or Cancellation()
    with open_registries(hosts, None, cancel=cancel, jobs=jobs) as registry:
        registry.ping([entry.source for entry in entries])

        def resolve(entry: LockEntry) -> tuple[str, str]:
            head = registry.head_manifest(entry.source)
            if head is None:
                raise NotFound(f"{entry.source}: not found at the source")
            return str(entry.source), head.digest

        return dict(run_parallel(resolve, entries, jobs, cancel, "lock"))


def resolve_chart_digests(
    charts: Sequence[ChartEntry], hosts: HostOptions, cancel: Cancellation | None = None
) -> dict[str, str]:
    """Each chart's archive digest at its source now, keyed by its source name."""
    cancel = cancel or Cancellation()
    with open_registries(hosts, None, cancel=cancel) as registry:
        registry.ping([c.oci for c in charts if c.oci])
        unpinned = [replace(c, digest=None) for c in charts]  # the lock's digest may be stale
        source = chart_source(registry, unpinned)
        return {str(c.source): source.current_digest(c) for c in unpinned}
