"""What a place that holds images must offer so the one copy algorithm can use it, and the
chunked file reader the file-backed transports share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Protocol, runtime_checkable

from mirror.image.manifest import Descriptor, Manifest
from mirror.image.reference import Reference

#: How much a file-backed transport reads at once.
CHUNK = 1024 * 1024


class ImageSource(Protocol):
    """Somewhere images are read from (a registry, an OCI layout, a Docker daemon)."""

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor a tag or digest points to, or None if absent (cheap: no body)."""

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """The manifest ``digest`` (or the tag's), verified against its digest."""

    def open_blob(
        self, ref: Reference, desc: Descriptor
    ) -> AbstractContextManager[Iterator[bytes]]:
        """A stream of the blob's bytes; the copy verifies them."""


class ImageDestination(Protocol):
    """Somewhere images are written to."""

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor a tag points to, or None."""

    def has_blob(self, ref: Reference, desc: Descriptor) -> bool:
        """Whether the blob is already there for ``ref``'s repository."""

    def mount_blob(self, ref: Reference, desc: Descriptor, source: Reference) -> bool:
        """Make a blob held by ``source`` available to ``ref`` without upload, if supported."""

    def put_blob(self, ref: Reference, desc: Descriptor, chunks: Iterable[bytes]) -> None:
        """Store a blob from a stream of verified bytes; nothing is kept if the stream fails."""

    def put_manifest(self, ref: Reference, manifest: Manifest, tag: str | None) -> None:
        """Store a manifest by digest, and under ``tag`` when given."""


@runtime_checkable
class ReferrerSource(Protocol):
    """A source that can list a manifest's OCI 1.1 referrers itself (the referrers API)."""

    def serves_referrers(self, ref: Reference, digest: str) -> bool:
        """Whether ``ref``'s registry has the referrers API (asked about ``digest`` the first
        time, then known for the run)."""

    def referrers(self, ref: Reference, digest: str) -> Manifest | None:
        """The index of ``digest``'s referrers, or None where the source cannot list them."""


@runtime_checkable
class TagLister(Protocol):
    """A source that can list a repository's tags in a few requests (the tags API)."""

    def tags(self, ref: Reference, pages: int) -> frozenset[str] | None:
        """Every tag of ``ref``'s repository; None where the source refuses to list them, or
        would take more than ``pages`` pages to."""


def read_chunks(handle: IO[bytes], size: int) -> Iterator[bytes]:
    """``size`` bytes from ``handle``'s position, in chunks of at most CHUNK (fewer if the
    file ends early: the copy's size check catches that)."""
    remaining = size
    while remaining > 0:
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk
