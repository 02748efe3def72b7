"""The one copy algorithm: read an image from a source transport, write it to a destination.

Blobs first (skip what is there, mount what the run already placed elsewhere, stream the
rest with verification), then child manifests, then the top manifest under its tag, so a
failed image never leaves a tag behind.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from mirror.attachments import AttachmentCopier
from mirror.errors import (
    DigestMismatch,
    HostileContent,
    MirrorError,
    NotFound,
)
from mirror.image.digest import DigestVerifier, sha256_digest
from mirror.image.manifest import (
    MAX_INDEX_DEPTH,
    MAX_INDEX_ENTRIES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Manifest,
    Platform,
    config_platform,
    parse_manifest,
    platform_matches,
)
from mirror.image.reference import Reference
from mirror.net.retry import retries_reported_to, retrying
from mirror.report import ImageResult
from mirror.run import (
    BLOB_WORKERS,
    CopyEvents,
    CopyJob,
    CopyOptions,
    NoEvents,
    guarded,
    in_background,
    run_parallel,
)
from mirror.transports.base import ImageDestination, ImageSource

_SKIPPED_LAYER_HINTS = ("foreign", "nondistributable")


class BlobLedger:
    """Where this run has placed each blob at the destination, shared by concurrent images.

    The first image to need a blob uploads it; others wait for it and then mount it. It also
    knows which destination registries have mounted a blob this run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}
        self._placed: dict[str, Reference] = {}
        self._mounting: set[str] = set()

    def mounted(self, registry: str) -> None:
        """Note that ``registry`` mounted a blob: it implements mounts, so one it does not
        make means the blob is not there."""
        with self._lock:
            self._mounting.add(registry)

    def mounts(self, registry: str) -> bool:
        """Whether ``registry`` has mounted a blob this run."""
        return registry in self._mounting

    def acquire(self, digest: str) -> tuple[bool, Reference | None]:
        """Return (owner, known location). Non-owners wait until the owner is done."""
        with self._lock:
            event = self._inflight.get(digest)
            if event is None:
                self._inflight[digest] = threading.Event()
                return True, self._placed.get(digest)
        event.wait()
        with self._lock:
            return False, self._placed.get(digest)

    def release(self, digest: str, placed: Reference | None) -> None:
        """Record where the blob now is (None if placing failed) and wake the waiters."""
        with self._lock:
            if placed is not None:
                self._placed[digest] = placed
            event = self._inflight.pop(digest, None)
        if event is not None:
            event.set()


def check_drift(job: CopyJob, current: str | None, result: ImageResult, frozen: bool) -> None:
    """Note drift (the source tag moved off the locked digest); with ``frozen`` it fails."""
    if job.locked_digest and current and current != job.locked_digest:
        result.drift = True
        result.notes.append(f"drift: source tag now points to {current}")
        if frozen:
            raise MirrorError(
                f"{job.source}: drift: tag points to {current}, lock says"
                f" {job.locked_digest} (--frozen)"
            )


def select_platforms(index: Manifest, platforms: tuple[Platform, ...]) -> Manifest:
    """A new index holding only the entries matching ``platforms`` (its digest differs)."""
    chosen = [
        c.raw for c in index.children if any(platform_matches(p, c.platform) for p in platforms)
    ]
    if not chosen:
        wanted = ", ".join(str(p) for p in platforms)
        raise NotFound(f"{index.digest}: no entry for platform(s) {wanted}")
    doc = json.loads(index.raw)
    doc["manifests"] = chosen
    raw = json.dumps(doc, indent=3).encode()
    return parse_manifest(raw, index.media_type, sha256_digest(raw))


class ImageCopier:
    """Copies one image with the transports, ledger and events of a run."""

    def __init__(
        self,
        source: ImageSource,
        destination: ImageDestination,
        events: CopyEvents,
        options: CopyOptions,
        ledger: BlobLedger | None = None,
    ) -> None:
        self.source = source
        self.destination = destination
        self.events = events
        self.options = options
        self.ledger = ledger or BlobLedger()
        self._tally = threading.Lock()
        self.attachments = AttachmentCopier(source, destination, options, self._quiet)
        self._found_present = False  # an image of this run was in place already

    def _quiet(self) -> ImageCopier:
        """A copier for attachments: silent, looking for none of its own, same blob ledger."""
        options = replace(self.options, attachments=False, verify_keys=())
        return ImageCopier(self.source, self.destination, NoEvents(), options, self.ledger)

    def _count(self, result: ImageResult, **amounts: int) -> None:
        """Add to the result's counters (blob threads of one image count concurrently)."""
        with self._tally:
            for name, amount in amounts.items():
                setattr(result, name, getattr(result, name) + amount)

    def copy(self, job: CopyJob) -> ImageResult:
        """Copy one image; every failure is caught into the result (status ``failed``)."""
        with (
            guarded(job, self.events) as result,
            retries_reported_to(lambda _: self._count(result, retries=1)),
        ):
            self._copy(job, result)
        return result

    def _copy(self, job: CopyJob, result: ImageResult) -> None:
        self.attachments.look_ahead(job)
        source_head = None
        if not job.platforms and (job.locked_digest or self._found_present):
            # the source tag will be asked about (drift), or likely will: ask it meanwhile
            source_head = in_background(lambda: self.source.head_manifest(job.source))
        existing = None if job.platforms else self.destination.head_manifest(job.destination)
        self._found_present = self._found_present or existing is not None
        if existing is None and not job.platforms and job.locked_digest is None:
            # Nothing to compare a source digest with: fetch by tag, one round trip fewer.
            try:
                top = self.source.get_manifest(job.source, None)
            except NotFound:
                raise NotFound(f"{job.source}: not found at the source") from None
            result.source_digest = top.digest
        else:
            needed = self._top_if_missing(job, existing, result, source_head)
            if needed is None:
                if existing is not None:
                    self.attachments.keep(job, existing, existing, result)
                return
            top = needed
        signed = top
        if job.platforms and top.is_index:
            result.notes.append(f"platform subset: destination digest differs from {top.digest}")
            top = select_platforms(top, job.platforms)
            existing = self.destination.head_manifest(job.destination)
            if existing is not None and existing.digest == top.digest:
                self.attachments.keep(job, signed, top, result)
                result.status, result.digest = "present", top.digest
                return
        elif job.platforms:
            reason = platform_refusal(job, top.digest, config_platform_of(self.source, job, top))
            if reason is not None:
                self.attachments.verify(job, top)
            if skip_for_platform(reason, result, self.options.frozen):
                return
        children = self._children(job, top)
        attached = self.attachments.prepare(job, signed, top)
        blobs = _unique(b for m in [*children, top] for b in m.blobs if _copyable(b))
        self.events.sized(job, sum(b.size for b in blobs))
        if self.options.dry_run:
            missing = [b for b in blobs if not self.destination.has_blob(job.destination, b)]
            result.status, result.digest = "skipped", top.digest
            result.notes.append(f"would upload {sum(b.size for b in missing)} bytes")
            return

        def copy_blob(desc: Descriptor) -> None:
            self._copy_blob(job, desc, result)

        run_parallel(copy_blob, blobs, BLOB_WORKERS, self.options.cancel, "blob")
        for child in children:
            self.destination.put_manifest(job.destination, child, None)
        self.options.cancel.check()
        if attached:  # what points at the image comes after it, its tag after them
            self.destination.put_manifest(job.destination, top, None)
            self.attachments.place(job, attached, result)
        self.destination.put_manifest(job.destination, top, job.destination.tag)
        result.status, result.digest = "copied", top.digest

    def _top_if_missing(
        self,
        job: CopyJob,
        existing: Descriptor | None,
        result: ImageResult,
        source_head: Callable[[], Descriptor | None] | None = None,
    ) -> Manifest | None:
        """The source's manifest after a HEAD on its tag (for drift; ``source_head`` if that is
        under way), or None if the destination already holds it."""
        head = source_head() if source_head else self.source.head_manifest(job.source)
        if head is None and job.locked_digest is None:
            raise NotFound(f"{job.source}: not found at the source")
        result.source_digest = head.digest if head else None
        wanted = job.locked_digest or (head.digest if head else None)
        check_drift(job, head.digest if head else None, result, self.options.frozen)
        if existing is not None and existing.digest == wanted:
            result.status, result.digest = "present", wanted
            return None
        return self.source.get_manifest(job.source, wanted)

    def _children(self, job: CopyJob, top: Manifest) -> list[Manifest]:
        """Every manifest below ``top`` once (indexes may nest), children before parents; the
        children of one index are fetched at once.

        Nesting deeper than MAX_INDEX_DEPTH, or more than MAX_INDEX_ENTRIES manifests in all,
        is refused as hostile.
        """
        found: dict[str, Manifest] = {}
        fetched = 0

        def fetch(digest: str) -> Manifest:
            return self.source.get_manifest(job.source, digest)

        def walk(parent: Manifest, depth: int) -> None:
            nonlocal fetched
            fresh = list(dict.fromkeys(c.digest for c in parent.children if c.digest not in found))
            if fresh and (depth > MAX_INDEX_DEPTH or fetched + len(fresh) > MAX_INDEX_ENTRIES):
                raise HostileContent(
                    f"{job.source}: indexes nested deeper than {MAX_INDEX_DEPTH} levels or"
                    f" holding more than {MAX_INDEX_ENTRIES} manifests refused"
                )
            fetched += len(fresh)
            manifests = run_parallel(fetch, fresh, BLOB_WORKERS, self.options.cancel, "manifest")
            for manifest in manifests:
                if manifest.digest not in found:
                    walk(manifest, depth + 1)
                    found[manifest.digest] = manifest

        walk(top, 1)
        return list(found.values())

    def _copy_blob(self, job: CopyJob, desc: Descriptor, result: ImageResult) -> None:
        self.options.cancel.check()
        owner, placed = self.ledger.acquire(desc.digest)
        landed: Reference | None = None
        try:
            elsewhere = (
                placed if placed and placed.repository != job.destination.repository else None
            )
            # A mount answers "is it there?" too, so a blob this run placed elsewhere skips HEAD.
            if elsewhere and self.destination.mount_blob(job.destination, desc, elsewhere):
                self.ledger.mounted(job.destination.registry)
                self._count(result, blobs_mounted=1)
                self.events.placed(job, desc.size, "mounted")
            elif self._held(job, desc, asked=elsewhere is not None):
                self._count(result, blobs_present=1, bytes_present=desc.size)
                self.events.placed(job, desc.size, "present")
            else:
                self._upload(job, desc)
                self._count(result, blobs_uploaded=1, bytes_uploaded=desc.size)
            landed = job.destination
        finally:
            if owner:
                self.ledger.release(desc.digest, landed)

    def _held(self, job: CopyJob, desc: Descriptor, asked: bool) -> bool:
        """Whether the destination repository holds the blob.

        Where the destination has mounted a blob this run, a mount from the repository itself
        asks that and opens the upload a missing blob needs: one request, not a HEAD then a
        POST. After a mount from elsewhere was ``asked`` and refused, a HEAD asks (the upload
        that mount may have opened is then the one used, or dropped).
        """
        if asked or not self.ledger.mounts(job.destination.registry):
            return self.destination.has_blob(job.destination, desc)
        return self.destination.mount_blob(job.destination, desc, job.destination)

    def _upload(self, job: CopyJob, desc: Descriptor) -> None:
        what = f"the transfer of blob {desc.digest}"
        for attempt in retrying(self.options.policy, what, self.options.cancel):
            with attempt, self.source.open_blob(job.source, desc) as chunks:
                self.destination.put_blob(job.destination, desc, self._stream(job, desc, chunks))

    def _stream(self, job: CopyJob, desc: Descriptor, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Verified bytes, held back by one chunk until the whole blob checks out."""
        verifier = DigestVerifier(desc.digest, desc.size)
        held: bytes | None = None
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                self.options.cancel.check()
                verifier.update(chunk)
                if held is not None:
                    yield held
                    self.events.advanced(job, len(held))
                held = chunk
            verifier.verify()
        except DigestMismatch as exc:
            raise DigestMismatch(f"{job.source}: blob {exc}") from None
        if held is not None:
            yield held
            self.events.advanced(job, len(held))


def config_platform_of(source: ImageSource, job: CopyJob, image: Manifest) -> Platform | None:
    """The platform a single-platform image's config names (read and verified), if any."""
    config = image.config
    if config is None:
        return None
    if config.size > MAX_MANIFEST_BYTES:
        raise HostileContent(f"{job.source}: image config of {config.size} bytes refused")
    verifier, raw = DigestVerifier(config.digest, config.size), bytearray()
    with source.open_blob(job.source, config) as chunks:
        for chunk in chunks:
            verifier.update(chunk)
            raw += chunk
    try:
        verifier.verify()
    except DigestMismatch as exc:
        raise DigestMismatch(f"{job.source}: config {exc}") from None
    return config_platform(bytes(raw))


def platform_refusal(job: CopyJob, digest: str, have: Platform | None) -> str | None:
    """Why the single-platform image ``digest`` (of platform ``have``) is none of
    ``job.platforms``, or None if it is one of them."""
    if any(platform_matches(wanted, have) for wanted in job.platforms):
        return None
    return (
        f"{job.source}: {digest} is a single-platform image for"
        f" {have or 'no named platform'}, not {', '.join(map(str, job.platforms))}"
    )


def skip_for_platform(reason: str | None, result: ImageResult, frozen: bool) -> bool:
    """Skip the image for ``reason`` (fail it with ``frozen``): never copy another platform
    than ``--platform`` names. False if there is no reason."""
    if reason is None:
        return False
    if frozen:
        raise MirrorError(f"{reason} (--frozen)")
    result.status = "skipped"
    result.notes.append(reason)
    return True


def _copyable(desc: Descriptor) -> bool:
    """Foreign / non-distributable layers stay where their URLs point."""
    return not (desc.raw.get("urls") and any(h in desc.media_type for h in _SKIPPED_LAYER_HINTS))


def _unique(descs: Iterable[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for desc in descs:
        seen.setdefault(desc.digest, desc)
    return list(seen.values())
