"""An image's attachments: cosign signatures, attestations and SBOMs, and OCI 1.1 referrers.

Cosign keeps them in the image's repository under the tags ``sha256-<hex>.sig``, ``.att`` and
``.sbom``, for the digest of the index and of each platform manifest. Referrers (manifests
whose ``subject`` is the image) come from the registry's referrers API, or where it has none
from the referrers tag schema: an index tagged ``sha256-<hex>`` that lists them. Each
attachment is copied as an image of its own, under the same tag, with its digest preserved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mirror import mediatypes
from mirror.digest import DigestVerifier
from mirror.errors import DigestMismatch, MirrorError
from mirror.manifest import Descriptor, Manifest
from mirror.manifestcache import ManifestCache, default_cache_dir
from mirror.reference import Reference
from mirror.report import ImageResult
from mirror.signature import (
    SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT,
    SignatureError,
    require_signature,
)
from mirror.transport import ReferrerSource

if TYPE_CHECKING:
    from mirror.copy import CopyJob, ImageCopier

#: Cosign's tag suffixes and the report counter each one adds to.
COSIGN_TAGS = (("sig", "signatures"), ("att", "attestations"), ("sbom", "sboms"))
MAX_PAYLOAD_BYTES = 1024 * 1024
_COUNTERS = ("bytes_uploaded", "blobs_uploaded", "blobs_mounted", "blobs_present", "retries")


def digest_tag(digest: str) -> str:
    """The tag cosign and the referrers tag schema derive from a digest: ``sha256-<hex>``."""
    return digest.replace(":", "-")


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


class _Silent:
    """Copy events of attachments: their image's progress line covers them."""

    def started(self, job: CopyJob) -> None:
        """Nothing to show."""

    def sized(self, job: CopyJob, total: int) -> None:
        """Nothing to show."""

    def advanced(self, job: CopyJob, nbytes: int) -> None:
        """Nothing to show."""

    def finished(self, job: CopyJob, result: ImageResult) -> None:
        """Nothing to show."""


class AttachmentCopier:
    """Finds an image's attachments at the source, checks its signature, copies them."""

    def __init__(self, copier: ImageCopier) -> None:
        self.image_copier = copier
        self.source, self.destination = copier.source, copier.destination
        self.options = copier.options
        self.cache = ManifestCache(default_cache_dir())
        self._quiet: ImageCopier | None = None

    @property
    def copier(self) -> ImageCopier:
        """The copier of attachments: silent, looking for no attachments of its own."""
        if self._quiet is None:
            from mirror.copy import ImageCopier

            parent = self.image_copier
            options = replace(parent.options, attachments=False, verify_keys=())
            self._quiet = ImageCopier(
                self.source, self.destination, _Silent(), options, parent.ledger
            )
        return self._quiet

    def wanted(self, job: CopyJob) -> bool:
        """Whether attachments are looked at (copied, or only read to check a signature)."""
        return self.options.attachments or bool(self.options.verify_keys or job.verify_keys)

    def prepare(self, job: CopyJob, signed: Manifest, top: Manifest) -> list[Attachment]:
        """The attachments of ``signed`` and of ``top``'s platform manifests, after checking
        ``signed``'s signature when keys are given (SignatureError if it has none valid)."""
        if not self.wanted(job):
            return []
        if signed.is_index:
            self.cache.put(signed)
        found = self.find(job, [signed.digest, *(c.digest for c in top.children)])
        self.check(job, signed.digest, found)
        return found

    def keep(self, job: CopyJob, present: Descriptor, result: ImageResult) -> None:
        """For an image already at the destination: check and bring its attachments up to date
        (HEADs only while nothing changed)."""
        if not self.wanted(job):
            return
        subjects = [present.digest]
        if present.media_type not in mediatypes.IMAGE_MANIFESTS:
            top = self.cache.get(present.digest) or self.source.get_manifest(
                job.source, present.digest
            )
            if top.is_index:
                self.cache.put(top)
            subjects += [c.digest for c in top.children]
        found = self.find(job, subjects)
        self.check(job, present.digest, found)
        self.place(job, found, result)

    def find(self, job: CopyJob, subjects: Sequence[str]) -> list[Attachment]:
        """Every attachment of ``subjects`` at the source."""
        found = []
        for subject in dict.fromkeys(subjects):
            for suffix, kind in COSIGN_TAGS:
                tag = f"{digest_tag(subject)}.{suffix}"
                head = self.source.head_manifest(_tagged(job.source, tag))
                if head is not None:
                    where = (_tagged(job.source, tag), _tagged(job.destination, tag))
                    found.append(Attachment(kind, subject, *where, head.digest))
            referrers = self._referrers(job, subject)
            if referrers is not None:
                found.append(referrers)
        return found

    def _referrers(self, job: CopyJob, subject: str) -> Attachment | None:
        tag = digest_tag(subject)
        where = (_tagged(job.source, tag), _tagged(job.destination, tag))
        if isinstance(self.source, ReferrerSource):
            listed = self.source.referrers(job.source, subject)
            if listed is not None:
                if not listed.children:
                    return None
                return Attachment("referrers", subject, *where, listed.digest, listed, True)
        head = self.source.head_manifest(where[0])
        if head is None:
            return None
        index = self._manifest(where[0], head.digest)
        return Attachment("referrers", subject, *where, head.digest, index)

    def _manifest(self, ref: Reference, digest: str) -> Manifest:
        """A referrers index: from the cache, else fetched (and kept)."""
        manifest = self.cache.get(digest)
        if manifest is None:
            manifest = self.source.get_manifest(ref, digest)
            self.cache.put(manifest)
        return manifest

    def check(self, job: CopyJob, digest: str, found: Sequence[Attachment]) -> None:
        """SignatureError unless a signature of ``digest`` verifies under the job's keys."""
        keys = (*self.options.verify_keys, *job.verify_keys)
        if not keys:
            return
        signatures: list[tuple[bytes, str]] = []
        for att in found:
            if att.subject != digest:
                continue
            if att.kind == "signatures":
                signatures += self._signatures(att.source, att.digest)
            elif att.referrers is not None:
                for entry in att.referrers.children:
                    if entry.raw.get("artifactType") == SIGNATURE_ARTIFACT:
                        signatures += self._signatures(_pinned(job.source, entry.digest), None)
        try:
            require_signature(digest, signatures, keys)
        except SignatureError as exc:
            raise SignatureError(f"{job.source}: {digest} {exc}") from None

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
        from mirror.copy import CopyJob

        target = Reference(job.destination.registry, job.destination.repository, source.tag)
        if source.tag is None:
            target = _pinned(target, digest)
        done = self.copier.copy(CopyJob(source, target, digest))
        if done.status == "failed":
            raise MirrorError(f"attachment {source}: {done.error}")
        for name in _COUNTERS:
            setattr(result, name, getattr(result, name) + getattr(done, name))
