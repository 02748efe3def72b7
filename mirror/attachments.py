"""An image's attachments: cosign signatures, attestations and SBOMs, and OCI 1.1 referrers.

Cosign keeps them in the image's repository under the tags ``sha256-<hex>.sig``, ``.att`` and
``.sbom``, for the digest of the index and of each platform manifest. Referrers (manifests
whose ``subject`` is the image) come from the registry's referrers API, or where it has none
from the referrers tag schema: an index tagged ``sha256-<hex>`` that lists them. Each
attachment is copied as an image of its own, under the same tag, with its digest preserved.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mirror.errors import DigestMismatch, MirrorError
from mirror.image import mediatypes
from mirror.image.digest import DigestVerifier
from mirror.image.manifest import Descriptor, Manifest
from mirror.image.reference import Reference
from mirror.image.signature import (
    SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT,
    SignatureError,
    VerifyKey,
    require_signature,
)
from mirror.manifestcache import ManifestCache, default_cache_dir
from mirror.net.retry import Cancellation
from mirror.report import ImageResult
from mirror.run import Copier, CopyJob, CopyOptions, run_parallel
from mirror.taglistings import TagListings
from mirror.transports.base import ImageDestination, ImageSource, ReferrerSource

#: Cosign's tag suffixes and the report counter each one adds to.
COSIGN_TAGS = (("sig", "signatures"), ("att", "attestations"), ("sbom", "sboms"))
MAX_PAYLOAD_BYTES = 1024 * 1024
#: Attachment tags of one image looked up at once.
LOOKUPS = 4
_ATTACHMENT_TAG = re.compile(r"sha256-([0-9a-f]{64})(?:\.(sig|att|sbom))?")
_COUNTERS = (
    "bytes_uploaded",
    "blobs_uploaded",
    "blobs_mounted",
    "blobs_present",
    "bytes_present",
    "retries",
)


def digest_tag(digest: str) -> str:
    """The tag cosign and the referrers tag schema derive from a digest: ``sha256-<hex>``."""
    return digest.replace(":", "-")


def attachment_of(ref: Reference | None) -> str | None:
    """For a reference tagged as an attachment, what it is and of what (``signatures of
    sha256:…``); None for anything else."""
    match = _ATTACHMENT_TAG.fullmatch(ref.tag or "") if ref is not None else None
    if match is None:
        return None
    kind = dict(COSIGN_TAGS).get(match[2] or "", "referrers")
    return f"{kind} of sha256:{match[1]}"


def _tagged(ref: Reference, tag: str) -> Reference:
    return Reference(ref.registry, ref.repository, tag)


def _pinned(ref: Reference, digest: str) -> Reference:
    return Reference(ref.registry, ref.repository, None, digest)


@dataclass(frozen=True)
class Attachment:
    """One tag attached to ``subject`` (the index or a platform manifest) at the source.

    ``referrers`` is the index listing the subject's referrers; ``by_api`` when the referrers
    API gave it (then it is written under the tag schema's tag at the destination).
    """

    kind: str
    subject: str
    source: Reference
    destination: Reference
    digest: str
    referrers: Manifest | None = None
    by_api: bool = False


class AttachmentReader:
    """Finds an image's attachments in a source and checks its signatures there."""

    def __init__(self, source: ImageSource, cancel: Cancellation | None = None) -> None:
        self.source = source
        self.cancel = cancel or Cancellation()
        self.cache = ManifestCache(default_cache_dir())
        self.listings = TagListings(source)

    def subjects(self, ref: Reference, top: Descriptor | Manifest) -> list[str]:
        """The digest of ``top`` and of its platform manifests (an index read from the cache
        when it was seen before)."""
        if isinstance(top, Descriptor):
            if top.media_type in mediatypes.IMAGE_MANIFESTS:
                return [top.digest]
            top = self._manifest(ref, top.digest)
        elif top.is_index:
            self.cache.put(top)
        return [top.digest, *(c.digest for c in top.children)]

    def find(
        self, source: Reference, destination: Reference, subjects: Sequence[str]
    ) -> list[Attachment]:
        """Every attachment of ``subjects`` in ``source``'s repository, with where each goes in
        ``destination``'s.

        The repository's tag listing (once per run) says which attachment tags exist, so only
        those cost a HEAD (for their digest); where the source refuses to list them, or needs
        more pages than MAX_PAGES, each tag is looked up with a HEAD. Referrers come from the
        API where the registry has one, else from the tag schema's tag.
        """
        subjects = list(dict.fromkeys(subjects))
        listed = self.listings.tags(source)
        api = self.source if isinstance(self.source, ReferrerSource) else None
        if api is not None and not api.serves_referrers(source, subjects[0]):
            api = None

        def look(lookup: tuple[str, str, str]) -> Attachment | None:
            subject, tag, kind = lookup
            where = (_tagged(source, tag), _tagged(destination, tag))
            if kind == "referrers" and api is not None:
                listing = api.referrers(source, subject)
                if listing is None or not listing.children:
                    return None
                return Attachment(kind, subject, *where, listing.digest, listing, True)
            head = self.source.head_manifest(where[0])
            if head is None:
                return None
            if kind == "referrers":
                index = self._manifest(where[0], head.digest)
                return Attachment(kind, subject, *where, head.digest, index)
            return Attachment(kind, subject, *where, head.digest)

        lookups = [
            (subject, f"{digest_tag(subject)}{suffix}", kind)
            for subject in subjects
            for suffix, kind in (*((f".{s}", k) for s, k in COSIGN_TAGS), ("", "referrers"))
        ]
        needed = [
            (subject, tag, kind)
            for subject, tag, kind in lookups
            if listed is None or tag in listed or (api is not None and kind == "referrers")
        ]
        found = run_parallel(look, needed, LOOKUPS, self.cancel, "attachments")
        return [att for att in found if att is not None]

    def none_in(self, source: Reference, digest: str) -> bool:
        """Whether ``source``'s repository surely holds no attachment at all: its tags listing
        has no ``sha256-`` tag, and its registry no referrers API (asked about ``digest``). Then
        an image's platform manifests need not be known (nor its index fetched)."""
        listed = self.listings.tags(source)
        if listed is None or any(tag.startswith("sha256-") for tag in listed):
            return False
        return not (
            isinstance(self.source, ReferrerSource) and self.source.serves_referrers(source, digest)
        )

    def _manifest(self, ref: Reference, digest: str) -> Manifest:
        """An index: from the cache, else fetched (and kept)."""
        manifest = self.cache.get(digest)
        if manifest is None:
            manifest = self.source.get_manifest(ref, digest)
            if manifest.is_index:
                self.cache.put(manifest)
        return manifest

    def check(
        self,
        ref: Reference,
        digest: str,
        found: Sequence[Attachment],
        keys: Sequence[VerifyKey],
    ) -> None:
        """SignatureError unless a signature of ``digest`` in ``found`` verifies under ``keys``."""
        signatures: list[tuple[bytes, str]] = []
        for att in found:
            if att.subject != digest:
                continue
            if att.kind == "signatures":
                signatures += self._signatures(att.source, att.digest)
            elif att.referrers is not None:
                for entry in att.referrers.children:
                    if entry.raw.get("artifactType") == SIGNATURE_ARTIFACT:
                        signatures += self._signatures(_pinned(ref, entry.digest), None)
        try:
            require_signature(digest, signatures, keys)
        except SignatureError as exc:
            raise SignatureError(f"{ref}: {digest} {exc}") from None

    def _signatures(self, ref: Reference, digest: str | None) -> list[tuple[bytes, str]]:
        """(payload, base64 signature) of each signed layer of a signature manifest."""
        manifest = self.source.get_manifest(ref, digest)
        found = []
        for layer in manifest.layers:
            annotations = layer.raw.get("annotations")
            signature = (
                annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
            )
            if isinstance(signature, str) and layer.size <= MAX_PAYLOAD_BYTES:
                found.append((self._payload(ref, layer), signature))
        return found

    def _payload(self, ref: Reference, layer: Descriptor) -> bytes:
        verifier = DigestVerifier(layer.digest, layer.size)
        parts = []
        with self.source.open_blob(ref, layer) as chunks:
            for chunk in chunks:
                verifier.update(chunk)
                parts.append(chunk)
        try:
            verifier.verify()
        except DigestMismatch as exc:
            raise DigestMismatch(f"{ref}: signature payload {exc}") from None
        return b"".join(parts)

    def missing(self, destination: ImageSource, found: Sequence[Attachment]) -> list[str]:
        """The attachments of ``found`` that ``destination`` lacks or holds in another version."""
        wanted: list[tuple[Reference, str]] = []
        for att in found:
            wanted.append((att.destination, att.digest))
            if att.referrers is not None:
                wanted += [
                    (_pinned(att.destination, e.digest), e.digest) for e in att.referrers.children
                ]
        gone = []
        for ref, digest in wanted:
            here = destination.head_manifest(ref)
            if here is None or here.digest != digest:
                gone.append(str(ref))
        return gone


class AttachmentCopier:
    """Copies an image's attachments with it, after checking its signature when asked to."""

    def __init__(
        self,
        source: ImageSource,
        destination: ImageDestination,
        options: CopyOptions,
        quiet: Callable[[], Copier],
    ) -> None:
        self.source, self.destination, self.options = source, destination, options
        self.reader = AttachmentReader(source, options.cancel)
        self._make_quiet = quiet
        self._quiet: Copier | None = None

    @property
    def copier(self) -> Copier:
        """The copier of attachments (``quiet`` makes it): silent, looking for no attachments
        of its own."""
        if self._quiet is None:
            self._quiet = self._make_quiet()
        return self._quiet

    def _keys(self, job: CopyJob) -> tuple[VerifyKey, ...]:
        return (*self.options.verify_keys, *job.verify_keys)

    def look_ahead(self, job: CopyJob) -> None:
        """Start listing the tags of ``job``'s source repository, if its attachments will be
        looked for, while the copy reads its manifests."""
        if self.options.attachments or self._keys(job):
            self.reader.listings.start(job.source)

    def prepare(
        self, job: CopyJob, signed: Descriptor | Manifest, top: Descriptor | Manifest
    ) -> list[Attachment]:
        """The attachments of ``signed`` and of ``top``'s platform manifests, after checking
        ``signed``'s signature when keys are given (SignatureError if it has none valid).

        ``top`` differs from ``signed`` for a platform subset: the narrowed index is nowhere at
        the source, so the source index's attachments stand for its own.
        """
        keys = self._keys(job)
        if not (self.options.attachments or keys):
            return []
        subjects = self.reader.subjects(job.source, top)
        subjects[0] = signed.digest
        found = self.reader.find(job.source, job.destination, subjects)
        if keys:
            self.reader.check(job.source, signed.digest, found, keys)
        return found if self.options.attachments else []

    def keep(
        self,
        job: CopyJob,
        signed: Descriptor | Manifest,
        top: Descriptor | Manifest,
        result: ImageResult,
    ) -> None:
        """For an image already at the destination (``top``, narrowed from ``signed`` or the
        same): check and bring its attachments up to date (HEADs only while nothing changed;
        nothing more where its repository has none)."""
        keys = self._keys(job)
        if not keys and self.options.attachments and self.reader.none_in(job.source, signed.digest):
            return
        self.place(job, self.prepare(job, signed, top), result)

    def verify(self, job: CopyJob, signed: Manifest) -> None:
        """Check ``signed``'s signature when keys are given, for an image not copied."""
        keys = self._keys(job)
        if keys:
            found = self.reader.find(job.source, job.destination, [signed.digest])
            self.reader.check(job.source, signed.digest, found, keys)

    def place(self, job: CopyJob, found: Sequence[Attachment], result: ImageResult) -> None:
        """Copy what is missing or changed at the destination, and count what is in place."""
        if not self.options.attachments:
            return
        for att in found:
            if att.by_api and att.referrers is not None:
                for entry in att.referrers.children:
                    self._copy(job, _pinned(job.source, entry.digest), entry.digest, result)
                here = self.destination.head_manifest(att.destination)
                if here is None or here.digest != att.digest:
                    self.destination.put_manifest(
                        att.destination, att.referrers, att.destination.tag
                    )
            else:
                here = self.destination.head_manifest(att.destination)
                if here is None or here.digest != att.digest:
                    self._copy(job, att.source, att.digest, result)
            amount = len(att.referrers.children) if att.referrers is not None else 1
            setattr(result, att.kind, getattr(result, att.kind) + amount)

    def _copy(self, job: CopyJob, source: Reference, digest: str, result: ImageResult) -> None:
        target = Reference(job.destination.registry, job.destination.repository, source.tag)
        if source.tag is None:
            target = _pinned(target, digest)
        done = self.copier.copy(CopyJob(source, target, digest))
        if done.status == "failed":
            raise MirrorError(f"attachment {source}: {done.error}")
        for name in _COUNTERS:
            setattr(result, name, getattr(result, name) + getattr(done, name))
