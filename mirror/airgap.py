"""Air-gapped installs: save locked images into an OCI image layout, load one into a registry.

Both directions are the one copy algorithm (:class:`mirror.copy.ImageCopier`) between the
registry transport and the layout transport. The archive carries the lock it was made from
(``images.lock``, pinned to the digests saved), so ``load`` knows the intended set.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mirror import mediatypes
from mirror.attachments import attachment_of
from mirror.copy import CopyEvents, CopyJob, CopyOptions, ImageCopier, run_copies
from mirror.errors import ArchiveError, MirrorError
from mirror.hosts import HostOptions
from mirror.layout import (
    LOCK_FILE,
    LayoutReader,
    LayoutWriter,
    open_layout,
    pack_layout,
    seed_blobs,
)
from mirror.lock import LockEntry, parse_lock, plan_destinations
from mirror.manifest import Descriptor, Platform
from mirror.reference import RegistryServer
from mirror.report import ImageResult, Report
from mirror.signature import entry_keys
from mirror.sync import DEFAULT_JOBS, Destination, open_registries
from mirror.transport import ImageSource


@dataclass(frozen=True)
class SaveTarget:
    """Where ``save`` writes: a layout directory, or a tar packed from a hidden work directory."""

    path: Path
    is_tar: bool

    @property
    def layout_dir(self) -> Path:
        """The directory blobs are fetched into (kept across runs until the tar is written)."""
        return self.path.with_name(f".{self.path.name}.partial") if self.is_tar else self.path


def save_target(output: str) -> SaveTarget:
    """``DIR/`` or an existing directory is a layout directory; anything else a tar file."""
    path = Path(output)
    if output.endswith("/") or path.is_dir():
        return SaveTarget(path, is_tar=False)
    if not path.parent.is_dir():
        raise ArchiveError(f"--output {output}: directory {path.parent} does not exist")
    return SaveTarget(path, is_tar=True)


def render_lock(entries: Sequence[LockEntry]) -> str:
    """``images.lock`` text for ``entries`` (what ``parse_lock`` reads back)."""
    lines = [
        "# Written by `mirror save`: the images of this archive, pinned to the digests saved.",
        "version = 1",
    ]
    for entry in entries:
        lines += ["", "[[images]]", f"source = {json.dumps(str(entry.source))}"]
        if entry.component:
            lines.append(f"component = {json.dumps(entry.component)}")
        if entry.digest:
            lines.append(f'digest = "{entry.digest}"')
        if entry.platforms:
            lines.append(f"platforms = {json.dumps([str(p) for p in entry.platforms])}")
        if entry.environment:
            lines.append(f'environment = "{entry.environment}"')
    return "\n".join(lines) + "\n"


def save(
    entries: Sequence[LockEntry],
    target: SaveTarget,
    hosts: HostOptions,
    events: CopyEvents,
    options: CopyOptions,
    *,
    platforms: Sequence[Platform] = (),
    jobs: int = DEFAULT_JOBS,
) -> Report:
    """Copy every entry from its registry into the layout (named by its full source reference).

    The index and lock are written once the copies are done (not if interrupted); a tar is
    packed and renamed into place only if every image was saved, otherwise its work directory
    stays for a re-run, which fetches only what is missing. Saving over a finished tar starts
    from the blobs it holds.
    """
    planned = [
        CopyJob(e.source, e.source, e.digest, tuple(platforms) or e.platforms, entry_keys(e))
        for e in entries
    ]
    if target.is_tar and target.path.is_file() and not target.layout_dir.exists():
        seed_blobs(target.path, target.layout_dir)  # the blobs it holds are not fetched again
    with open_registries(hosts, None, options.policy, options.cancel) as registry:
        return write_layout(registry, entries, planned, target, events, options, jobs, "save")


def write_layout(
    source: ImageSource,
    entries: Sequence[LockEntry],
    planned: Sequence[CopyJob],
    target: SaveTarget,
    events: CopyEvents,
    options: CopyOptions,
    jobs: int,
    command: str,
) -> Report:
    """Copy ``planned`` from ``source`` into the target's layout, then write its lock (pinned to
    what was saved) and index, and pack a tar if every image made it."""
    started = time.monotonic()
    layout = LayoutWriter(target.layout_dir)
    results = run_copies(list(planned), ImageCopier(source, layout, events, options), jobs)
    saved = [
        replace(
            entry,
            digest=entry.digest or (None if result.status == "failed" else result.source_digest),
            platforms=job.platforms,
        )
        for entry, job, result in zip(entries, planned, results, strict=True)
    ]
    layout.commit(render_lock(saved))
    report = Report(command, results, time.monotonic() - started)
    if target.is_tar and not report.failed:
        pack_layout(target.layout_dir, target.path)
        shutil.rmtree(target.layout_dir)
    return report


@dataclass(frozen=True)
class LoadPlan:
    """What ``load`` will do: one job per intended image, and why some cannot be loaded."""

    layout: LayoutReader
    jobs: tuple[CopyJob, ...]
    refused: dict[CopyJob, str] = field(default_factory=dict)

    def refusals(self, events: CopyEvents) -> dict[CopyJob, ImageResult]:
        """A failed result for each refused image, reported to ``events`` as it would be."""
        results = {}
        for job, reason in self.refused.items():
            events.started(job)
            results[job] = ImageResult(
                str(job.source), str(job.destination), "failed", error=f"{job.source}: {reason}"
            )
            events.finished(job, results[job])
        return results

    @property
    def todo(self) -> list[CopyJob]:
        """The jobs that were not refused."""
        return [job for job in self.jobs if job not in self.refused]


def plan_load(
    path: str, server: RegistryServer | None, platforms: Sequence[Platform] = ()
) -> LoadPlan:
    """Open the archive and plan each image's destination (errors here change nothing).

    Without a ``server`` each image keeps its source name (``load --to-docker``). With
    ``platforms``, only those platforms of multi-platform images are loaded.

    With an ``images.lock`` in the archive its entries are the intended set, and each must be
    in the index under its full name with the locked digest (unless the lock selected
    platforms, which changes the digest). Without one (a layout another tool wrote) every
    ``index.json`` entry is loaded under the name its ref-name annotation gives.
    """
    layout = open_layout(path)
    if layout.lock_text is not None:
        entries = parse_lock(layout.lock_text, f"{path}:{LOCK_FILE}").entries
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
    jobs: list[CopyJob] = []
    refused: dict[CopyJob, str] = {}
    planned = plan_destinations(entries, server) if server else [(e, e.source) for e in entries]
    for entry, destination in planned:
        found = layout.find(entry.source)
        digest = found.descriptor.digest if found else entry.digest
        job = CopyJob(entry.source, destination, digest, tuple(platforms))
        jobs.append(job)
        if found is None:
            refused[job] = "not in the archive"
        elif entry.digest and not entry.platforms and entry.digest != digest:
            refused[job] = f"the archive holds {digest}, its images.lock says {entry.digest}"
    return LoadPlan(layout, tuple(jobs), refused)


def load(
    plan: LoadPlan,
    destination: Destination,
    hosts: HostOptions,
    events: CopyEvents,
    options: CopyOptions,
    *,
    jobs: int = DEFAULT_JOBS,
) -> Report:
    """Copy the planned images from the archive into the destination registry."""
    started = time.monotonic()
    done = plan.refusals(events)
    todo = plan.todo
    with open_registries(hosts, destination, options.policy, options.cancel) as registry:
        copier = ImageCopier(plan.layout, registry, events, options)
        done.update(zip(todo, run_copies(todo, copier, jobs), strict=True))
    return Report("load", [done[job] for job in plan.jobs], time.monotonic() - started)


@dataclass
class ArchivedImage:
    """One named image of an archive, as ``inspect`` lists it."""

    name: str
    digest: str
    media_type: str
    size: int = 0
    blobs: int = 0
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

    @property
    def complete(self) -> bool:
        """Whether every image is whole and every locked image is there."""
        return not self.not_in_archive and not any(i.missing or i.error for i in self.images)


def _describe(
    layout: LayoutReader, top: Descriptor, image: ArchivedImage, sizes: dict[str, int]
) -> None:
    """Fill sizes, platforms and missing blobs of ``image`` by walking its manifests."""
    seen: set[str] = set()
    pending = [top]
    while pending:
        desc = pending.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
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
            pending += [*manifest.blobs, *manifest.children]
            image.platforms += [str(c.platform) for c in manifest.children if c.platform]


def inspect(path: str) -> ArchiveContents:
    """List an archive's images with digests, sizes and platforms, without reading blobs."""
    layout = open_layout(path)
    locked = None
    if layout.lock_text is not None:
        locked = {e.source for e in parse_lock(layout.lock_text, f"{path}:{LOCK_FILE}").entries}
    images = []
    sizes: dict[str, int] = {}
    for entry in layout.entries:
        desc = entry.descriptor
        name = entry.name or f"(unnamed entry {entry.number})"
        image = ArchivedImage(name, desc.digest, desc.media_type, error=entry.problem)
        image.attachment = attachment_of(entry.reference)
        if locked is not None:
            image.in_lock = entry.reference in locked
        try:
            _describe(layout, desc, image, sizes)
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
    )
