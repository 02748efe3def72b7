"""Air-gapped installs: save locked images and charts into an OCI image layout, load one into
a registry.

Both directions are the one copy algorithm (:class:`mirror.copy.ImageCopier`) between the
registry (or chart) transport and the layout transport; a Helm chart sits in the layout as the
OCI artifact ``helm push`` makes. The archive carries the lock it was made from
(``images.lock``, pinned to the digests saved), so ``load`` knows the intended set.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mirror.attachments import attachment_of
from mirror.chart import ChartCopier, chart_source, copy_with_charts, plan_chart_jobs
from mirror.copy import BlobLedger, ImageCopier
from mirror.delta import DeltaContents, Holdings, delta_copier, read_delta, writer_for
from mirror.errors import ArchiveError, InputError, MirrorError
from mirror.image import mediatypes
from mirror.image.helmchart import chart_layer
from mirror.image.lock import LOCK_FILE, ChartEntry, Lock, LockEntry, parse_lock, render_lock
from mirror.image.manifest import Descriptor, Platform
from mirror.image.reference import RegistryServer
from mirror.net.hosts import HostOptions
from mirror.report import ImageResult, Report
from mirror.run import (
    CopyEvents,
    CopyJob,
    CopyOptions,
    PrivateRegistry,
    Selection,
    open_registries,
    plan_jobs,
    run_copies,
    run_parallel,
)
from mirror.transports.base import ImageSource
from mirror.transports.chart import ChartSource
from mirror.transports.layout import (
    LayoutEntry,
    LayoutReader,
    TarStorage,
    open_layout,
    pack_layout,
    packed_layout,
    seed_blobs,
)
from mirror.transports.parts import (
    PartsList,
    clear_stale,
    copy_into_parts,
    part_count,
    parts_file,
    split_input,
)
from mirror.transports.registry import RegistryTransport


@dataclass(frozen=True)
class SaveTarget:
    """Where ``save`` writes: a layout directory, or a tar packed from a hidden work directory."""

    path: Path
    is_tar: bool
    holdings: Holdings | None = None  # what the base holds: a delta is written against it
    split_size: int | None = None  # cut the tar into parts of this many bytes
    force: bool = False  # remove parts of an earlier run rather than refuse

    @property
    def layout_dir(self) -> Path:
        """The directory blobs are fetched into (kept across runs until the tar is written)."""
        return self.path.with_name(f".{self.path.name}.partial") if self.is_tar else self.path


def save_target(output: str, split_size: int | None = None, force: bool = False) -> SaveTarget:
    """``DIR/`` or an existing directory is a layout directory; anything else a tar file,
    cut into parts of ``split_size`` if given."""
    path = Path(output)
    if output.endswith("/") or path.is_dir():
        if split_size is not None:
            raise InputError(f"--output {output}: --split-size splits a tar, not a directory")
        return SaveTarget(path, is_tar=False)
    if not path.parent.is_dir():
        raise ArchiveError(f"--output {output}: directory {path.parent} does not exist")
    return SaveTarget(path, is_tar=True, split_size=split_size, force=force)


def write_tar(root: Path, target: SaveTarget) -> None:
    """Pack the layout at ``root`` into the target's tar or parts, first refusing (or, with
    ``force``, removing) parts of an earlier run that this one would not overwrite."""
    packed = packed_layout(root)
    split = target.split_size
    clear_stale(target.path, part_count(packed.size, split) if split else 0, target.force)
    pack_layout(packed, target.path, split)


def split_archive(path: str, split_size: int, force: bool) -> PartsList:
    """Cut the existing tar at ``path`` into parts beside it, as ``save --split-size`` would
    have written them (its members are checked first, as ``load`` does)."""
    archive = Path(path)
    if not archive.is_file() or split_input(archive) is not None:
        raise InputError(f"--input {path}: give an unsplit tar archive")
    TarStorage.scan(archive)
    clear_stale(archive, part_count(archive.stat().st_size, split_size), force)
    with archive.open("rb") as source:
        return copy_into_parts(source, archive, split_size)


def save(
    selection: Selection,
    target: SaveTarget,
    hosts: HostOptions,
    events: CopyEvents,
    options: CopyOptions,
) -> Report:
    """Copy every entry from its registry, and every chart from its repository, into the
    layout (named by its full source reference).

    The index and lock are written once the copies are done (not if interrupted); a tar is
    packed and renamed into place only if every image was saved, otherwise its work directory
    stays for a re-run, which fetches only what is missing. Saving over a finished tar starts
    from the blobs it holds.
    """
    planned = plan_jobs(selection.entries, None, selection.platforms)
    if target.is_tar and not target.layout_dir.exists():
        earlier = [target.path, parts_file(target.path)]
        previous = next((path for path in earlier if path.is_file()), None)
        if previous is not None:  # the blobs it holds are not fetched again
            seed_blobs(previous, target.layout_dir)
    with open_registries(hosts, None, options.policy, options.cancel, options.jobs) as registry:
        charts = chart_source(registry, selection.charts)
        return write_layout(registry, selection.entries, planned, target, events, options, charts)


def write_layout(
    source: ImageSource,
    entries: Sequence[LockEntry],
    planned: Sequence[CopyJob],
    target: SaveTarget,
    events: CopyEvents,
    options: CopyOptions,
    charts: ChartSource | None = None,
    command: str = "save",
) -> Report:
    """Copy ``planned`` from ``source`` (and the locked ``charts``) into the target's layout,
    then write its lock (pinned to what was saved) and index, and pack a tar if every image
    made it."""
    started = time.monotonic()
    layout = writer_for(target.layout_dir, target.holdings)
    copier = ImageCopier(source, layout, events, options)
    locked = charts.charts if charts else ()
    chart_jobs = plan_chart_jobs(locked, None)
    charter = ChartCopier.beside(copier, charts) if charts else None
    results = copy_with_charts(copier, planned, charter, list(chart_jobs), options.jobs)
    saved_charts = [
        replace(chart, digest=chart.digest or (None if r.status == "failed" else r.source_digest))
        for chart, r in zip(locked, results[len(planned) :], strict=True)
    ]
    saved = [
        replace(
            entry,
            digest=entry.digest or (None if result.status == "failed" else result.source_digest),
            platforms=job.platforms,
        )
        for entry, job, result in zip(entries, planned, results[: len(planned)], strict=True)
        if result.status != "skipped"  # not for the platforms saved: not in the archive
    ]
    layout.commit(render_lock(saved, saved_charts))
    report = Report(command, results, time.monotonic() - started)
    if target.is_tar and not report.failed:
        write_tar(target.layout_dir, target)
        shutil.rmtree(target.layout_dir)
    return report


@dataclass(frozen=True)
class LoadPlan:
    """What ``load`` will do: one job per intended image or chart, and why some cannot be
    loaded."""

    layout: LayoutReader
    jobs: tuple[CopyJob, ...]
    refused: dict[CopyJob, str] = field(default_factory=dict)
    charts: frozenset[CopyJob] = frozenset()

    def without_charts(self) -> LoadPlan:
        """The plan without its charts (a Docker daemon holds images only)."""
        return LoadPlan(
            self.layout,
            tuple(job for job in self.jobs if job not in self.charts),
            {job: why for job, why in self.refused.items() if job not in self.charts},
        )

    def refusals(self, events: CopyEvents) -> dict[CopyJob, ImageResult]:
        """A failed result for each refused image, reported to ``events`` as it would be."""
        results = {}
        for job, reason in self.refused.items():
            events.started(job)
            results[job] = ImageResult(
                str(job.source),
                str(job.destination),
                "failed",
                error=f"{job.source}: {reason}",
                kind="chart" if job in self.charts else "image",
            )
            events.finished(job, results[job])
        return results

    @property
    def todo(self) -> list[CopyJob]:
        """The jobs that were not refused."""
        return [job for job in self.jobs if job not in self.refused]


def plan_load(
    path: str,
    server: RegistryServer | None,
    platforms: Sequence[Platform] = (),
    trusted: Lock | None = None,
) -> LoadPlan:
    """Open the archive and plan each image's destination (errors here change nothing).

    Without a ``server`` each image keeps its source name (``load --to-docker``). With
    ``platforms``, only those platforms of multi-platform images are loaded.

    With an ``images.lock`` in the archive its entries are the intended set, and each must be
    in the index under its full name with the locked digest (unless the lock selected
    platforms, which changes the digest). Without one (a layout another tool wrote) every
    ``index.json`` entry is loaded under the name its ref-name annotation gives.

    With a ``trusted`` lock (``load --lock``), an image loads only if that lock pins it to the
    digest the archive holds: the archive's own lock vouches for nothing.
    """
    layout = open_layout(path)
    charts: tuple[ChartEntry, ...] = ()
    if layout.lock_text is not None:
        lock = parse_lock(layout.lock_text, f"{path}:{LOCK_FILE}")
        entries, charts = lock.entries, lock.charts
    else:
        unusable = next((e for e in layout.entries if e.reference is None), None)
        if unusable is not None:
            name = f" {unusable.name!r}" if unusable.name else ""
            raise ArchiveError(
                f"{path}: index.json entry {unusable.number}{name}"
                f" ({unusable.descriptor.digest}) {unusable.problem}; name every image when"
                " writing the layout (skopeo copy … oci:DIR:REGISTRY/REPOSITORY:TAG)"
            )
        entries = tuple(
            LockEntry(e.reference, digest=e.descriptor.digest)
            for e in layout.entries
            if e.reference is not None
        )
    pins = {e.source: e.digest for e in trusted.entries} if trusted else {}
    refused: dict[CopyJob, str] = {}
    held = [layout.find(entry.source) for entry in entries]
    archived = [  # each image as the archive holds it: its digest there, no keys to check
        replace(
            e, digest=found.descriptor.digest if found else e.digest, platforms=(), verify_key=None
        )
        for e, found in zip(entries, held, strict=True)
    ]
    jobs = plan_jobs(archived, server, platforms)
    for entry, found, job in zip(entries, held, jobs, strict=True):
        digest = job.locked_digest
        if found is None:
            refused[job] = "not in the archive"
        elif entry.digest and not entry.platforms and entry.digest != digest:
            refused[job] = f"the archive holds {digest}, its images.lock says {entry.digest}"
        elif trusted is not None and entry.source not in pins:
            refused[job] = f"not in {trusted.path}"
        elif trusted is not None and pins[entry.source] != digest:
            pin = pins[entry.source] or "no digest (pin it with mirror lock)"
            refused[job] = f"the archive holds {digest}, {trusted.path} says {pin}"
    trusted_charts = {c.source: c for c in trusted.charts} if trusted else {}
    chart_jobs = []
    for planned_job, chart in plan_chart_jobs(charts, server).items():
        found = layout.find(chart.source)
        job = replace(planned_job, locked_digest=found.descriptor.digest if found else None)
        chart_jobs.append(job)
        why = "not in the archive" if found is None else _chart_mismatch(layout, found, chart)
        if found is not None and not why and trusted is not None:
            pinned = trusted_charts.get(chart.source)
            if pinned is None or not pinned.digest:
                why = f"no digest for it in {trusted.path} (pin it with mirror lock)"
            else:
                why = _chart_mismatch(layout, found, pinned, trusted.path)
        if why:
            refused[job] = why
    return LoadPlan(layout, (*jobs, *chart_jobs), refused, frozenset(chart_jobs))


def archived_lock(path: str) -> Lock:
    """The ``images.lock`` an archive carries (ArchiveError if it has none)."""
    layout = open_layout(path)
    if layout.lock_text is None:
        raise ArchiveError(f"{path}: holds no images.lock; give --lock")
    return parse_lock(layout.lock_text, f"{path}:{LOCK_FILE}")


def _chart_mismatch(
    layout: LayoutReader, found: LayoutEntry, chart: ChartEntry, lock: str = "its images.lock"
) -> str | None:
    """Why the archive's chart is not the one ``lock`` names, if it is not."""
    try:
        layer = chart_layer(layout.manifest(found.descriptor.digest, str(chart.source)))
    except MirrorError as exc:
        return str(exc)
    if layer is None:
        return f"{found.descriptor.digest} in the archive is not a Helm chart"
    if chart.digest and layer.digest != chart.digest:
        return f"the archive holds chart {layer.digest}, {lock} says {chart.digest}"
    return None


def load(
    plan: LoadPlan,
    destination: PrivateRegistry,
    hosts: HostOptions,
    events: CopyEvents,
    options: CopyOptions,
) -> Report:
    """Copy the planned images from the archive into the destination registry."""
    started, jobs = time.monotonic(), options.jobs
    done = plan.refusals(events)
    todo = plan.todo
    with open_registries(hosts, destination, options.policy, options.cancel, jobs) as opened:
        registry = opened if options.dry_run else opened.pushing()
        copier = delta_copier(plan.layout, todo, registry, events, options) or ImageCopier(
            plan.layout, registry, events, options
        )
        note_loaded(plan.layout, todo, registry, copier.ledger, options)
        done.update(zip(todo, run_copies(todo, copier, jobs, options.cancel), strict=True))
    for job in plan.charts & done.keys():
        done[job].kind = "chart"
    return Report("load", [done[job] for job in plan.jobs], time.monotonic() - started)


def note_loaded(
    layout: LayoutReader,
    jobs: Sequence[CopyJob],
    registry: RegistryTransport,
    ledger: BlobLedger,
    options: CopyOptions,
) -> None:
    """Record in ``ledger`` the blobs of images an earlier (interrupted) load already tagged,
    so the images still to load mount them from there rather than upload them again."""

    def note(job: CopyJob) -> None:
        if job.platforms or job.locked_digest is None:
            return  # a narrowed index is not the archive's: nothing to compare it with
        with contextlib.suppress(MirrorError):  # the copy itself reports what fails here
            head = registry.head_manifest(job.destination)
            if head is not None and head.digest == job.locked_digest:
                for digest in _image_blobs(layout, job.locked_digest, str(job.source)):
                    ledger.release(digest, job.destination)

    run_parallel(note, jobs, options.jobs, options.cancel, "image")


def _image_blobs(layout: LayoutReader, digest: str, where: str) -> set[str]:
    """The configs and layers of the manifest ``digest`` and those below it that the layout
    holds."""
    found: set[str] = set()
    pending = [digest]
    while pending:
        manifest = layout.manifest(pending.pop(), where)
        found.update(b.digest for b in manifest.blobs)
        pending += [
            c.digest for c in manifest.children if layout.storage.blob_size(c.digest) is not None
        ]
    return found


@dataclass
class ArchivedImage:
    """One named image (or Helm chart) of an archive, as ``inspect`` lists it."""

    name: str
    digest: str
    media_type: str
    kind: str = "image"
    size: int = 0
    blobs: int = 0
    in_base: int = 0  # objects a delta relies on its base for
    platforms: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    in_lock: bool | None = None
    attachment: str | None = None
    error: str | None = None


@dataclass
class ArchiveContents:
    """What an archive holds, read from its index and manifests only (no blob is read)."""

    path: str
    format: str
    images: list[ArchivedImage]
    lock_entries: int | None
    not_in_archive: list[str]
    size: int = 0
    delta: DeltaContents | None = None

    @property
    def complete(self) -> bool:
        """Whether every image is whole and every locked image is there."""
        return not self.not_in_archive and not any(i.missing or i.error for i in self.images)


def _describe(
    layout: LayoutReader,
    top: Descriptor,
    image: ArchivedImage,
    sizes: dict[str, int],
    relied: set[str],
) -> None:
    """Fill sizes, platforms and missing blobs of ``image`` by walking its manifests (what a
    delta relies on its base for is not missing)."""
    seen: set[str] = set()
    pending = [top]
    while pending:
        desc = pending.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        if desc.digest in relied:
            continue
        stored = layout.storage.blob_size(desc.digest)
        if stored != desc.size:
            if not desc.raw.get("urls"):
                image.missing.append(desc.digest)
            continue
        image.size += stored
        image.blobs += 1
        sizes[desc.digest] = stored
        if desc is top or desc.media_type in mediatypes.MANIFESTS:
            manifest = layout.manifest(desc.digest, image.name)
            if desc is top and chart_layer(manifest) is not None:
                image.kind = "chart"
            pending += [*manifest.blobs, *manifest.children]
            image.platforms += [str(c.platform) for c in manifest.children if c.platform]


def inspect(path: str) -> ArchiveContents:
    """List an archive's images with digests, sizes and platforms, without reading blobs."""
    layout = open_layout(path)
    locked = None
    if layout.lock_text is not None:
        lock = parse_lock(layout.lock_text, f"{path}:{LOCK_FILE}")
        locked = {e.source for e in lock.entries} | {c.source for c in lock.charts}
    images = []
    sizes: dict[str, int] = {}
    delta = read_delta(layout)
    relied = delta.relied_digests if delta else set()
    for entry in layout.entries:
        desc = entry.descriptor
        name = entry.name or f"(unnamed entry {entry.number})"
        image = ArchivedImage(name, desc.digest, desc.media_type, error=entry.problem)
        image.attachment = attachment_of(entry.reference)
        if locked is not None:
            image.in_lock = entry.reference in locked
        if delta is not None and entry.name is not None:
            image.in_base = len(delta.relies.get(entry.name, ()))
        try:
            _describe(layout, desc, image, sizes, relied)
        except MirrorError as exc:
            image.error = str(exc)
        images.append(image)
    present = {e.reference for e in layout.entries}
    return ArchiveContents(
        path=path,
        format=layout.storage.kind,
        images=images,
        lock_entries=len(locked) if locked is not None else None,
        not_in_archive=sorted(str(r) for r in (locked or set()) - present),
        size=sum(sizes.values()),
        delta=delta,
    )
