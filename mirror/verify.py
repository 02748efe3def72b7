"""``mirror verify``: is every locked image (and chart) at the destination, with the digest the
lock or the source names and every attachment the source has?"""

from __future__ import annotations

import time

from mirror.attachments import AttachmentReader
from mirror.chart import chart_source, plan_chart_jobs, verify_chart
from mirror.copy import select_platforms
from mirror.errors import MirrorError, NotFound
from mirror.image.manifest import Descriptor, platform_matches
from mirror.net.hosts import HostOptions
from mirror.report import ImageResult, Report
from mirror.run import (
    CopyJob,
    CopyOptions,
    PrivateRegistry,
    Selection,
    open_registries,
    plan_jobs,
    registries_of,
    run_parallel,
)
from mirror.transports.base import ImageSource


def held_manifest(registry: ImageSource, job: CopyJob) -> Descriptor | None:
    """What the private registry holds under ``job``'s tag (None: nothing), the digest to pin.

    For an entry with ``platforms`` that is the narrowed index sync pushed, whose digest is
    nowhere at the source (the source index's is the one signed); it must list only those
    platforms, else MirrorError.
    """
    if not job.platforms:
        return registry.head_manifest(job.destination)
    try:
        here = registry.get_manifest(job.destination, None)
    except NotFound:
        return None
    stray = [
        str(c.platform)
        for c in here.children
        if not any(platform_matches(p, c.platform) for p in job.platforms)
    ]
    if stray:
        raise MirrorError(
            f"{job.destination}: holds {here.digest}, with platform(s) {', '.join(stray)}"
            " the lock does not name"
        )
    return Descriptor(here.media_type, here.digest, len(here.raw))


def verify(
    selection: Selection, destination: PrivateRegistry, hosts: HostOptions, options: CopyOptions
) -> Report:
    """Check every entry (and chart) is at the destination with the digest the lock or source
    says, a chart by its archive's digest, and (with ``attachments``) that it holds every
    signature, attestation, SBOM and referrer the source has.

    Once ``options.cancel`` is set no check starts and Interrupted is raised (see
    run_parallel); ``options.attachments`` off skips the attachment check.
    """
    charts, jobs, cancel = selection.charts, options.jobs, options.cancel
    attachments = options.attachments
    planned = plan_jobs(selection.entries, destination.server, selection.platforms)
    chart_jobs = plan_chart_jobs(charts, destination.server)
    started = time.monotonic()
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
                result.source_digest = expected
                subjects: list[str] = []
                if job.platforms:
                    top = registry.get_manifest(job.source, expected)
                    if top.is_index:
                        narrowed = select_platforms(top, job.platforms)
                        expected = narrowed.digest
                        subjects = [top.digest, *(c.digest for c in narrowed.children)]
                have = held_manifest(registry, job)
                result.digest = have.digest if have else None
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
