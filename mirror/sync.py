"""Registry-to-registry runs over a lock: sync, verify, and resolving tags for ``mirror lock``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from mirror.attachments import AttachmentReader
from mirror.chart import (
    ChartCopier,
    chart_source,
    copy_with_charts,
    plan_chart_jobs,
    verify_chart,
)
from mirror.copy import (
    BLOB_WORKERS,
    Cancellation,
    CopyEvents,
    CopyJob,
    CopyOptions,
    ImageCopier,
    run_parallel,
    select_platforms,
)
from mirror.errors import MirrorError, NotFound
from mirror.image.lock import ChartEntry, LockEntry, plan_destinations
from mirror.image.manifest import Platform
from mirror.image.reference import Reference, RegistryServer
from mirror.image.signature import entry_keys
from mirror.net.auth import CredentialStore
from mirror.net.client import RegistryClient
from mirror.net.credentials import Credentials
from mirror.net.hosts import HostOptions
from mirror.net.retry import RetryPolicy
from mirror.report import ImageResult, Report
from mirror.transports.registry import RegistryTransport

DEFAULT_JOBS = 4


@dataclass(frozen=True)
class Destination:
    """The private registry and the credentials for it."""

    server: RegistryServer
    credentials: Credentials | None = None


def open_registries(
    hosts: HostOptions,
    destination: Destination | None,
    policy: RetryPolicy | None = None,
    cancel: Cancellation | None = None,
    jobs: int = DEFAULT_JOBS,
) -> RegistryTransport:
    """One registry transport for both ends (shared tokens; a connection pool per registry
    sized for ``jobs`` images at once)."""
    explicit = {}
    if destination is not None and destination.credentials is not None:
        explicit[destination.server.host] = destination.credentials
    store = CredentialStore(explicit, hosts.auth_file)
    client = RegistryClient(hosts, store, policy, cancel, transfers=jobs * BLOB_WORKERS)
    return RegistryTransport(client)


def plan_jobs(
    entries: Sequence[LockEntry], server: RegistryServer, platforms: Sequence[Platform] = ()
) -> list[CopyJob]:
    """Copy jobs for lock entries; ``--platform`` overrides the lock's ``platforms``."""
    return [
        CopyJob(
            entry.source, dest, entry.digest, tuple(platforms) or entry.platforms, entry_keys(entry)
        )
        for entry, dest in plan_destinations(entries, server)
    ]


def registries_of(planned: Sequence[CopyJob], charts: dict[CopyJob, ChartEntry]) -> list[Reference]:
    """The references whose registries a run talks to (a chart repository is no registry)."""
    refs = [ref for job in planned for ref in (job.source, job.destination)]
    return refs + [ref for job, c in charts.items() for ref in (c.oci, job.destination) if ref]


def sync(
    entries: Sequence[LockEntry],
    destination: Destination,
    hosts: HostOptions,
    events: CopyEvents,
    options: CopyOptions,
    *,
    charts: Sequence[ChartEntry] = (),
    platforms: Sequence[Platform] = (),
    jobs: int = DEFAULT_JOBS,
) -> Report:
    """Copy every entry (and chart) from its source to the destination registry."""
    planned = plan_jobs(entries, destination.server, platforms)
    chart_jobs = plan_chart_jobs(charts, destination.server)
    started = time.monotonic()
    with open_registries(hosts, destination, options.policy, options.cancel, jobs) as registry:
        registry.ping(registries_of(planned, chart_jobs))
        copier = ImageCopier(registry, registry, events, options)
        charter = ChartCopier.beside(copier, chart_source(registry, charts), placed=registry)
        results = copy_with_charts(copier, planned, charter, list(chart_jobs), jobs)
    command = "sync --dry-run" if options.dry_run else "sync"
    return Report(command, results, time.monotonic() - started)


def verify(
    entries: Sequence[LockEntry],
    destination: Destination,
    hosts: HostOptions,
    *,
    charts: Sequence[ChartEntry] = (),
    platforms: Sequence[Platform] = (),
    jobs: int = DEFAULT_JOBS,
    cancel: Cancellation | None = None,
    attachments: bool = True,
) -> Report:
    """Check every entry (and chart) is at the destination with the digest the lock or source
    says, a chart by its archive's digest, and (with ``attachments``) that it holds every
    signature, attestation, SBOM and referrer the source has.

    Once ``cancel`` is set no check starts and Interrupted is raised (see run_parallel).
    """
    planned = plan_jobs(entries, destination.server, platforms)
    chart_jobs = plan_chart_jobs(charts, destination.server)
    started = time.monotonic()
    cancel = cancel or Cancellation()
    with open_registries(hosts, destination, cancel=cancel, jobs=jobs) as registry:
        registry.ping(registries_of(planned, chart_jobs))
        charts_read = chart_source(registry, charts)
        reader = AttachmentReader(registry, cancel)

        def check(job: CopyJob) -> ImageResult:
            if job in chart_jobs:
                return verify_chart(charts_read, registry, job, chart_jobs[job])
            result = ImageResult(str(job.source), str(job.destination))
            try:
                expected = job.locked_digest
                if expected is None:
                    head = registry.head_manifest(job.source)
                    if head is None:
                        raise NotFound(f"{job.source}: not found at the source")
                    expected = head.digest
                subjects: list[str] = []
                if job.platforms:
                    top = registry.get_manifest(job.source, expected)
                    if top.is_index:
                        narrowed = select_platforms(top, job.platforms)
                        expected = narrowed.digest
                        subjects = [top.digest, *(c.digest for c in narrowed.children)]
                have = registry.head_manifest(job.destination)
                result.source_digest, result.digest = expected, have.digest if have else None
                if have is None:
                    raise NotFound(f"{job.destination}: missing")
                if have.digest != expected:
                    raise MirrorError(f"{job.destination}: has {have.digest}, expected {expected}")
                if attachments:
                    subjects = subjects or reader.subjects(job.source, have)
                    found = reader.find(job.source, job.destination, subjects)
                    missing = reader.missing(registry, found)
                    if missing:
                        raise MirrorError(
                            f"{job.destination}: attachment(s) at the source missing here:"
                            f" {', '.join(missing)}"
                        )
                result.status = "present"
            except MirrorError as exc:
                result.status, result.error = "failed", str(exc)
            return result

        results = run_parallel(check, [*planned, *chart_jobs], jobs, cancel, "verify")
    return Report("verify", results, time.monotonic() - started)


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
