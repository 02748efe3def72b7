"""The tar format of ``docker save`` and ``docker load``, written and read as streams.

Writing: one image read from any :class:`~mirror.transports.base.ImageSource` becomes a tar that
``docker load`` accepts (``manifest.json`` with ``RepoTags``, the config blob, the layer blobs
as stored; the daemon decompresses them). Nothing is staged on disk and every blob is verified
while it streams: a mismatch aborts the stream, and the daemon loads nothing from a broken tar.

Reading: a tar written by ``docker save`` (both the classic ``<id>/layer.tar`` layout and the
OCI-layout one of newer engines) is an image source whose manifest is an OCI image manifest
built from ``manifest.json``: the config blob unchanged (so the image ID, its digest, stays)
and the layers as the daemon gives them.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mirror.errors import ArchiveError, DigestMismatch, MirrorError
from mirror.image import mediatypes
from mirror.image.digest import DigestVerifier, sha256_digest
from mirror.image.manifest import MAX_MANIFEST_BYTES, Descriptor, Manifest, parse_manifest
from mirror.image.reference import Reference
from mirror.transports.base import ImageSource, read_chunks

MANIFEST_FILE = "manifest.json"
_BLOCK = tarfile.BLOCKSIZE
_BLOB_PATH = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_LAYER_TYPES = {
    b"\x1f\x8b": mediatypes.OCI_LAYER_GZIP,
    b"\x28\xb5\x2f\xfd": mediatypes.OCI_LAYER_ZSTD,
}


def _member(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _member_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def load_stream(
    source: ImageSource,
    ref: Reference,
    image: Manifest,
    repo_tags: Sequence[str],
    advanced: Callable[[int], None],
) -> Iterator[bytes]:
    """A ``docker load`` tar of the image manifest ``image`` (read from ``source`` for ``ref``).

    ``advanced`` is told of every chunk streamed; it may raise to abort the stream.
    """
    if image.config is None or image.is_index:
        raise ArchiveError(f"{ref}: {image.digest} is not an image manifest")
    written: set[str] = set()
    for desc in (image.config, *image.layers):
        if desc.digest in written:
            continue
        written.add(desc.digest)
        yield _member(_member_name(desc.digest), desc.size)
        verifier = DigestVerifier(desc.digest, desc.size)
        with source.open_blob(ref, desc) as chunks:
            for chunk in chunks:
                verifier.update(chunk)
                advanced(len(chunk))
                yield chunk
        try:
            verifier.verify()
        except DigestMismatch as exc:
            raise DigestMismatch(f"{ref}: blob {exc}") from None
        yield _padding(desc.size)
    entry = {
        "Config": _member_name(image.config.digest),
        "RepoTags": list(repo_tags),
        "Layers": [_member_name(layer.digest) for layer in image.layers],
    }
    manifest = json.dumps([entry]).encode()
    yield _member(MANIFEST_FILE, len(manifest)) + manifest + _padding(len(manifest))
    yield b"\0" * (2 * _BLOCK)


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


class SavedImage:
    """One image of a ``docker save`` tar on disk, as an image source (any ``ref`` reads it).

    The tar's member headers are read once; blobs are streamed from their offsets, so
    concurrent reads need no lock and nothing is extracted.
    """

    name = "docker-archive"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._blobs: dict[str, _Member] = {}
        try:
            with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
                self.manifest = self._describe({m.name: m for m in tar}, handle)
        except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"{path}: not a docker save archive ({exc})") from None
        except ArchiveError as exc:
            raise ArchiveError(f"{path}: {exc}") from None

    def _describe(self, members: dict[str, tarfile.TarInfo], handle: IO[bytes]) -> Manifest:
        """The OCI image manifest of the tar's single image; notes where each blob lies."""

        def located(name: str) -> _Member:
            info = members[_resolve(members, name)]
            return _Member(info.offset_data, info.size)

        def read(member: _Member) -> bytes:
            if member.size > MAX_MANIFEST_BYTES:
                raise ArchiveError(f"{MANIFEST_FILE} or config over 4 MiB")
            handle.seek(member.offset)
            return handle.read(member.size)

        entries = json.loads(read(located(MANIFEST_FILE)))
        if not isinstance(entries, list) or len(entries) != 1:
            raise ArchiveError(f"expected one image in {MANIFEST_FILE}")
        entry: dict[str, Any] = entries[0]
        config_member = located(entry["Config"])
        config = read(config_member)
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        if len(diff_ids) != len(entry["Layers"]):
            raise ArchiveError(f"{MANIFEST_FILE} and the config disagree on the layers")
        config_digest = sha256_digest(config)
        self._blobs[config_digest] = config_member
        layers = []
        for diff_id, layer_path in zip(diff_ids, entry["Layers"], strict=True):
            member = located(layer_path)
            named = _BLOB_PATH.match(_resolve(members, layer_path))
            digest = f"sha256:{named.group(1)}" if named else str(diff_id)
            handle.seek(member.offset)
            magic = handle.read(4)
            media_type = next(
                (t for m, t in _LAYER_TYPES.items() if magic.startswith(m)), mediatypes.OCI_LAYER
            )
            self._blobs[digest] = member
            layers.append({"mediaType": media_type, "digest": digest, "size": member.size})
        doc = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {
                "mediaType": mediatypes.OCI_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": layers,
        }
        raw = json.dumps(doc, indent=2).encode()
        return parse_manifest(raw, mediatypes.OCI_MANIFEST, sha256_digest(raw))

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor of the built manifest."""
        return Descriptor(self.manifest.media_type, self.manifest.digest, len(self.manifest.raw))

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """The built manifest (there is no other in a saved image)."""
        if digest not in (None, self.manifest.digest):
            raise MirrorError(f"{ref}: the daemon's image is {self.manifest.digest}, not {digest}")
        return self.manifest

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """Stream the config or a layer out of the tar."""
        member = self._blobs.get(desc.digest)
        if member is None:
            raise ArchiveError(f"{ref}: blob {desc.digest} is not in the saved image")
        with self.path.open("rb") as handle:
            handle.seek(member.offset)
            yield read_chunks(handle, member.size)


def _resolve(members: dict[str, tarfile.TarInfo], name: str, hops: int = 0) -> str:
    """The regular member ``name`` stands for, following the symlinks ``docker save`` writes
    for repeated layers (within the tar only)."""
    name = posixpath.normpath(name)
    member = members.get(name)
    if member is None or hops > 8:
        raise ArchiveError(f"{name}: not in the archive")
    if member.issym():
        return _resolve(members, posixpath.join(posixpath.dirname(name), member.linkname), hops + 1)
    if not member.isreg():
        raise ArchiveError(f"{name}: not a regular file")
    return name
