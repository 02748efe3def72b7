"""The OCI image layout transport: a layout directory (read and written) or a tar of one (read).

A tar is never extracted. Its member headers are checked once (no links, devices, absolute or
``..`` names, nothing but the layout files, Docker's ``manifest.json`` and ``repositories``, and
``blobs/sha256/<hex>``), then blobs are streamed straight out of the archive by offset. A
directory being written gets each blob through a temporary name, and ``index.json`` only at
:meth:`LayoutWriter.commit`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from mirror.errors import (
    ArchiveError,
    DigestMismatch,
    HostileContent,
    InputError,
    InvalidReference,
    MirrorError,
)
from mirror.image import mediatypes
from mirror.image.digest import sha256_digest, verified
from mirror.image.lock import LOCK_FILE
from mirror.image.manifest import MAX_MANIFEST_BYTES, Descriptor, Manifest, parse_manifest
from mirror.image.reference import Reference, parse_reference
from mirror.transports.base import CHUNK, read_chunks
from mirror.transports.parts import PartWriter, SplitArchive, open_parts, split_input

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
MAX_LOCK_BYTES = 1024 * 1024
MAX_LAYOUT_FILE_BYTES = 64 * 1024
MAX_MEMBERS = 100_000
_LAYOUT_FILES = (LAYOUT_FILE, INDEX_FILE, LOCK_FILE)
# Docker's own index of the images, beside index.json in what ``docker save`` writes since
# Docker 25 (and in meshlift's image archive): allowed in a tar, never read.
_DOCKER_FILES = ("manifest.json", "repositories")
_LAYOUT_DIRS = ("", "blobs", "blobs/sha256")
_BLOB_NAME = re.compile(r"^blobs/sha256/[a-f0-9]{64}$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_TRAILER = 2 * tarfile.BLOCKSIZE
_EXTENSION_HEADERS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
MAX_EXTENSION_HEADER = 1024 * 1024


def blob_path(digest: str) -> str:
    """The layout-relative path of a sha256 blob; other algorithms are not stored."""
    if not _SHA256.match(digest):
        raise ArchiveError(f"blob {digest}: only sha256 digests are stored in a layout")
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


class LayoutStorage(Protocol):
    """Where a layout's files are: a directory or a tar archive."""

    location: str
    kind: str

    def read_file(self, name: str, limit: int) -> bytes | None:
        """A layout file (``index.json`` …) of at most ``limit`` bytes, or None if absent."""

    def blob_size(self, digest: str) -> int | None:
        """The stored size of a blob, or None if it is not there."""

    def stream(self, name: str) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """The bytes of a file present in the layout, in chunks of at most 1 MiB."""


class DirectoryStorage:
    """A layout directory. Symbolic links inside it are refused, not followed."""

    kind = "directory"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _open(self, name: str) -> IO[bytes] | None:
        path = self.root / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ArchiveError(f"{path}: cannot read: {exc.strerror}") from None
        handle = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise ArchiveError(f"{path}: not a regular file")
        return handle

    def read_file(self, name: str, limit: int) -> bytes | None:
        """Read a small layout file."""
        handle = self._open(name)
        if handle is None:
            return None
        with handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise HostileContent(f"{self.root / name}: larger than {limit} bytes")
        return data

    def blob_size(self, digest: str) -> int | None:
        """Size of a blob file; a link or anything but a regular file is an error."""
        path = self.root / blob_path(digest)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            raise ArchiveError(f"{path}: not a regular file (links are not followed)")
        return info.st_size

    @contextlib.contextmanager
    def stream(self, name: str) -> Iterator[Iterator[bytes]]:
        """Stream a file of the directory."""
        handle = self._open(name)
        if handle is None:
            raise ArchiveError(f"{self.root / name}: missing")
        with handle:
            yield read_chunks(handle, os.fstat(handle.fileno()).st_size)


@dataclass(frozen=True)
class TarMember:
    """Where a member's data lies in the archive."""

    offset: int
    size: int


class TarStorage:
    """A tar of a layout, read in place: member data is streamed by offset, never extracted.

    The tar is one file, or the checked parts of a split archive read as one (``split``).
    """

    def __init__(
        self,
        location: str,
        opener: Callable[[], IO[bytes]],
        members: dict[str, TarMember],
        split: SplitArchive | None = None,
    ) -> None:
        self.location = location
        self.opener = opener
        self.members = members
        self.split = split
        self.kind = f"tar in {len(split.listing.parts)} parts" if split else "tar"

    @classmethod
    def scan(cls, path: Path) -> TarStorage:
        """Check every member header (reading no member data) and index the members."""
        return cls._scan(str(path), lambda: path.open("rb"))

    @classmethod
    def scan_parts(cls, split: SplitArchive) -> TarStorage:
        """As :meth:`scan`, over the checked parts of a split archive."""
        return cls._scan(split.location, split.open, split)

    @classmethod
    def _scan(
        cls, location: str, opener: Callable[[], IO[bytes]], split: SplitArchive | None = None
    ) -> TarStorage:
        try:
            with opener() as handle:
                members = _scan_members(location, handle)
        except tarfile.TarError as exc:
            raise ArchiveError(f"{location}: not a readable tar archive ({exc})") from None
        except OSError as exc:
            raise ArchiveError(f"{location}: cannot read: {exc.strerror or exc}") from None
        return cls(location, opener, members, split)

    def read_file(self, name: str, limit: int) -> bytes | None:
        """Read a small member."""
        member = self.members.get(name)
        if member is None:
            return None
        if member.size > limit:
            raise HostileContent(f"{self.location}: {name} larger than {limit} bytes")
        with self.stream(name) as chunks:
            return b"".join(chunks)

    def blob_size(self, digest: str) -> int | None:
        """Size of the blob's member."""
        member = self.members.get(blob_path(digest))
        return member.size if member else None

    @contextlib.contextmanager
    def stream(self, name: str) -> Iterator[Iterator[bytes]]:
        """Stream a member's bytes from its offset in the archive."""
        member = self.members.get(name)
        if member is None:
            raise ArchiveError(f"{self.location}: {name} missing")
        with self.opener() as handle:
            handle.seek(member.offset)
            yield read_chunks(handle, member.size)


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses, before reading them, the extension headers tarfile would load into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise tarfile.HeaderError(f"sparse member {self.name!r} refused")
        if self.type in _EXTENSION_HEADERS and self.size > MAX_EXTENSION_HEADER:
            raise tarfile.HeaderError(f"extension header of {self.size} bytes refused")
        processed: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return processed


def _scan_members(path: str, handle: IO[bytes]) -> dict[str, TarMember]:
    head = handle.read(tarfile.BLOCKSIZE)
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            raise ArchiveError(
                f"{path}: {kind}-compressed; give the plain tar (layers are already compressed)"
            )
    handle.seek(0)
    members: dict[str, TarMember] = {}
    others: list[str] = []
    with tarfile.open(fileobj=handle, mode="r:", tarinfo=_BoundedTarInfo) as tar:
        try:
            for count, info in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"{path}: more than {MAX_MEMBERS} members")
                name = _member_name(path, info)
                if name is None:
                    continue
                if not (name in (*_LAYOUT_FILES, *_DOCKER_FILES) or _BLOB_NAME.match(name)):
                    others.append(name)
                elif name in members:
                    raise ArchiveError(f"{path}: member {name} appears twice")
                else:
                    members[name] = TarMember(info.offset_data, info.size)
        except tarfile.TarError as exc:
            raise ArchiveError(f"{path}: truncated or corrupt tar ({exc})") from None
        end = tar.offset
    handle.seek(end)
    trailer = handle.read(_TRAILER)
    if len(trailer) < _TRAILER or trailer.strip(b"\0"):
        raise ArchiveError(
            f"{path}: truncated or corrupt tar (no end-of-archive after {end} bytes)"
        )
    if LAYOUT_FILE not in members or INDEX_FILE not in members:
        held = [*(name for name in _DOCKER_FILES if name in members), *others]
        found = f" (holds {', '.join(held[:3])})" if held else ""
        raise ArchiveError(f"{path}: not an OCI image layout: no oci-layout or index.json{found}")
    if others:
        raise ArchiveError(
            f"{path}: unexpected member {others[0]}: an OCI image layout holds only"
            " oci-layout, index.json, images.lock, blobs/sha256/<digest> and Docker's"
            " manifest.json and repositories"
        )
    return members


def _member_name(path: str, info: tarfile.TarInfo) -> str | None:
    """The normalised name of a regular member, None for a layout directory; unsafe: error."""
    raw = info.name
    parts = raw.split("/")
    if raw.startswith("/") or ".." in parts or "\\" in raw or "\0" in raw:
        raise ArchiveError(f"{path}: unsafe member {raw!r}: absolute or '..' path")
    if info.issym() or info.islnk():
        raise ArchiveError(f"{path}: unsafe member {raw!r}: links are not allowed")
    if info.ischr() or info.isblk() or info.isfifo():
        raise ArchiveError(f"{path}: unsafe member {raw!r}: devices and FIFOs are not allowed")
    name = "/".join(p for p in parts if p not in ("", "."))
    if info.isdir():
        if name not in _LAYOUT_DIRS:
            raise ArchiveError(f"{path}: unexpected directory {raw!r} in an OCI image layout")
        return None
    if not info.isreg() or info.issparse():
        raise ArchiveError(f"{path}: unsupported member {raw!r} (type {info.type!r})")
    return name


def entry_reference(name: str, layout_name: str) -> Reference:
    """The image an ``index.json`` ref name stands for.

    A name with ``/``, ``:`` or ``@`` is an image reference, normalised as Docker does
    (``nats:2.9`` is ``docker.io/library/nats:2.9``). A bare name (``v1``) is, as in the OCI
    image spec, a tag of the repository the layout holds, named after the layout itself
    (``skopeo copy … oci:nats:2.9`` holds ``docker.io/library/nats:2.9``).
    """
    if any(c in name for c in "/:@"):
        return parse_reference(name)
    try:
        return parse_reference(f"{layout_name}:{name}")
    except InputError:
        raise InvalidReference(
            f"ref name {name!r} is a bare tag and the layout name {layout_name!r} is not a"
            " repository name to put it under"
        ) from None


@dataclass(frozen=True)
class LayoutEntry:
    """One ``index.json`` entry: its ref name and the image that name stands for."""

    number: int
    name: str | None
    descriptor: Descriptor
    reference: Reference | None
    problem: str | None = None


def _parse_index(raw: bytes, where: str) -> tuple[Descriptor, ...]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{where}: index.json is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise ArchiveError(f"{where}: index.json is not an OCI index (no manifests list)")
    try:
        return parse_manifest(raw, mediatypes.OCI_INDEX, sha256_digest(raw)).children
    except MirrorError as exc:
        raise ArchiveError(f"{where}: index.json: {exc}") from None


def read_index(storage: LayoutStorage, layout_name: str) -> list[LayoutEntry]:
    """Check ``oci-layout`` and parse ``index.json`` into entries."""
    where = storage.location
    marker = storage.read_file(LAYOUT_FILE, MAX_LAYOUT_FILE_BYTES)
    if marker is None:
        raise ArchiveError(f"{where}: not an OCI image layout (no oci-layout file)")
    try:
        version = json.loads(marker).get("imageLayoutVersion")
    except (ValueError, UnicodeDecodeError, AttributeError):
        version = None
    if not isinstance(version, str) or not version.startswith("1."):
        raise ArchiveError(f"{where}: oci-layout: unsupported imageLayoutVersion {version!r}")
    raw = storage.read_file(INDEX_FILE, MAX_MANIFEST_BYTES)
    if raw is None:
        raise ArchiveError(f"{where}: not an OCI image layout (no index.json)")
    entries = []
    for number, desc in enumerate(_parse_index(raw, where), start=1):
        annotations = desc.raw.get("annotations")
        name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
        if not isinstance(name, str) or not name:
            entries.append(LayoutEntry(number, None, desc, None, "has no ref name annotation"))
            continue
        try:
            entries.append(LayoutEntry(number, name, desc, entry_reference(name, layout_name)))
        except InputError as exc:
            entries.append(LayoutEntry(number, name, desc, None, str(exc)))
    return entries


def read_manifest(
    storage: LayoutStorage, digest: str, where: str, media_type: str | None = None
) -> Manifest:
    """Read, verify and parse the manifest blob ``digest`` (``where`` names it in errors)."""
    size = storage.blob_size(digest)
    if size is None:
        raise ArchiveError(f"{where}: manifest {digest} is missing from the archive")
    if size > MAX_MANIFEST_BYTES:
        raise HostileContent(f"{where}: manifest {digest} of {size} bytes exceeds 4 MiB")
    with storage.stream(blob_path(digest)) as chunks:
        raw = b"".join(chunks)
    actual = sha256_digest(raw)
    if actual != digest:
        raise DigestMismatch(f"{where}: manifest digest mismatch: expected {digest}, got {actual}")
    return parse_manifest(raw, media_type, digest)


class LayoutReader:
    """An OCI image layout (directory or tar) as the source of a copy."""

    name = "layout"

    def __init__(self, storage: LayoutStorage, layout_name: str) -> None:
        self.storage = storage
        self.entries = read_index(storage, layout_name)
        self._by_reference: dict[Reference, LayoutEntry] = {}
        self._media_types = {e.descriptor.digest: e.descriptor.media_type for e in self.entries}
        for entry in self.entries:
            if entry.reference is None:
                continue
            other = self._by_reference.setdefault(entry.reference, entry)
            if other is not entry:
                raise ArchiveError(
                    f"{storage.location}: index.json entries {other.number} and {entry.number}"
                    f" both name {entry.reference}"
                )
        text = storage.read_file(LOCK_FILE, MAX_LOCK_BYTES)
        try:
            self.lock_text = text.decode() if text is not None else None
        except UnicodeDecodeError:
            raise ArchiveError(f"{storage.location}: images.lock is not UTF-8") from None

    def find(self, ref: Reference) -> LayoutEntry | None:
        """The entry naming ``ref``, if any."""
        return self._by_reference.get(ref)

    def manifest(self, digest: str, where: str) -> Manifest:
        """Read, verify and parse the manifest blob ``digest`` (``where`` names it in errors)."""
        manifest = read_manifest(self.storage, digest, where, self._media_types.get(digest))
        for child in manifest.children:
            self._media_types.setdefault(child.digest, child.media_type)
        return manifest

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor ``ref``'s entry points to (or the manifest ``ref.digest``)."""
        entry = self.find(ref)
        if entry is not None:
            return entry.descriptor
        if ref.digest is not None and _SHA256.match(ref.digest):
            size = self.storage.blob_size(ref.digest)
            if size is not None:
                return Descriptor(self._media_types.get(ref.digest, ""), ref.digest, size)
        return None

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """The manifest ``digest`` (or the one ``ref`` names), verified."""
        if digest is None:
            head = self.head_manifest(ref)
            if head is None:
                raise ArchiveError(f"{ref}: not in the archive")
            digest = head.digest
        return self.manifest(digest, str(ref))

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """Stream a blob out of the layout (the copy verifies digest and size)."""
        if self.storage.blob_size(desc.digest) is None:
            raise ArchiveError(f"{ref}: blob {desc.digest} is missing from the archive")
        with self.storage.stream(blob_path(desc.digest)) as chunks:
            yield chunks


def layout_name(path: Path) -> str:
    """The repository name bare-tag entries belong to: the directory or tar name."""
    name = path.resolve().name
    return name.removesuffix(".tar") if path.is_file() else name


def open_layout(path: str | Path) -> LayoutReader:
    """Open a layout directory, a tar of one, or a split tar (a part, its parts list or their
    directory; every part checked first) for reading (ArchiveError if it is none of these)."""
    target = Path(path)
    listed = split_input(target)
    if listed is not None:
        split = open_parts(listed)
        storage: LayoutStorage = TarStorage.scan_parts(split)
        return LayoutReader(storage, split.listing.archive.removesuffix(".tar"))
    if target.is_dir():
        storage = DirectoryStorage(target)
    elif target.is_file():
        storage = TarStorage.scan(target)
    elif target.exists():
        raise ArchiveError(f"{target}: not a file or directory")
    else:
        raise ArchiveError(f"{target}: no such file or directory")
    return LayoutReader(storage, layout_name(target))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(target: Path) -> Iterator[IO[bytes]]:
    """A file written under a temporary name next to ``target`` and renamed over it once
    complete and synced; nothing is left behind if writing fails."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_atomic(target: Path, chunks: Iterable[bytes]) -> None:
    with _atomic_file(target) as handle:
        for chunk in chunks:
            handle.write(chunk)


class LayoutWriter:
    """An OCI image layout directory as the destination of a copy.

    Blobs land as they arrive (each through a temporary name), so a re-run finds them; the
    index, the lock and the ``oci-layout`` marker are written only by :meth:`commit`, so an
    interrupted run never leaves a layout that looks complete.
    """

    name = "layout"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self._lock = threading.Lock()
        self._named: dict[str, dict[str, Any]] = {}
        self._unnamed: list[dict[str, Any]] = []
        self.annotations: dict[str, str] = {}  # of index.json itself
        if root.exists():
            self._adopt()
        self.blobs.mkdir(parents=True, exist_ok=True)

    def _adopt(self) -> None:
        """Take over an existing layout or an interrupted save; refuse anything else."""
        if not self.root.is_dir():
            raise ArchiveError(f"{self.root}: exists and is not a directory")
        strangers = sorted(
            p.name for p in self.root.iterdir() if p.name not in (*_LAYOUT_FILES, "blobs")
        )
        if strangers:
            raise ArchiveError(
                f"{self.root}: exists and is not an OCI image layout (holds {strangers[0]});"
                " give a new or empty directory"
            )
        if not (self.root / INDEX_FILE).exists():
            return
        storage = DirectoryStorage(self.root)
        for entry in read_index(storage, self.root.name):
            if entry.name is None:
                self._unnamed.append(entry.descriptor.raw)
            else:
                self._named[entry.name] = entry.descriptor.raw

    def _blob(self, digest: str) -> Path:
        return self.root / blob_path(digest)

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor stored under ``ref``'s name, if its manifest blob is there."""
        with self._lock:
            raw = self._named.get(str(ref))
        if raw is None:
            return None
        desc = Descriptor(str(raw.get("mediaType", "")), str(raw["digest"]), int(raw["size"]))
        return desc if self._complete(desc) else None

    def _complete(self, desc: Descriptor) -> bool:
        """Whether the manifest and everything below it is stored (foreign layers excepted)."""
        path = self._blob(desc.digest)
        if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
            return False
        raw = path.read_bytes()
        if sha256_digest(raw) != desc.digest:
            return False
        try:
            manifest = parse_manifest(raw, desc.media_type, desc.digest)
        except MirrorError:
            return False
        blobs = [b for b in manifest.blobs if not b.raw.get("urls")]
        return all(self._complete(c) for c in manifest.children) and all(map(self._has, blobs))

    def has_blob(self, ref: Reference, desc: Descriptor) -> bool:
        """Whether a blob file of the right size is there (blobs land only once verified)."""
        return self._has(desc)

    def _has(self, desc: Descriptor) -> bool:
        try:
            info = os.lstat(self._blob(desc.digest))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size == desc.size

    def mount_blob(self, ref: Reference, desc: Descriptor, source: Reference) -> bool:
        """Blobs are shared by every image of a layout: nothing to mount."""
        return False

    def put_blob(self, ref: Reference, desc: Descriptor, chunks: Iterable[bytes]) -> None:
        """Store the verified stream under the blob's digest."""
        _write_atomic(self._blob(desc.digest), chunks)

    def put_manifest(self, ref: Reference, manifest: Manifest, tag: str | None) -> None:
        """Store the manifest blob; name it ``str(ref)`` in the index when it is the top one."""
        path = self._blob(manifest.digest)
        if not path.is_file():
            _write_atomic(path, [manifest.raw])
        if tag is None and ref.digest != manifest.digest:
            return
        descriptor = {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": len(manifest.raw),
            "annotations": {REF_NAME: str(ref)},
        }
        with self._lock:
            self._named[str(ref)] = descriptor

    def descriptors(self) -> list[dict[str, Any]]:
        """The ``index.json`` entries so far (unnamed first, then by name)."""
        with self._lock:
            return [*self._unnamed, *(self._named[k] for k in sorted(self._named))]

    def commit(self, lock_text: str | None) -> None:
        """Write ``images.lock``, ``oci-layout`` and, last, ``index.json``; drop temp files."""
        for leftover in self.blobs.glob(".*.part"):
            leftover.unlink(missing_ok=True)
        _fsync_dir(self.blobs)
        if lock_text is not None:
            _write_atomic(self.root / LOCK_FILE, [lock_text.encode()])
        marker = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()
        _write_atomic(self.root / LAYOUT_FILE, [marker])
        manifests = self.descriptors()
        index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
        if self.annotations:
            index["annotations"] = self.annotations
        _write_atomic(self.root / INDEX_FILE, [json.dumps(index, indent=2).encode() + b"\n"])
        _fsync_dir(self.root)


def referenced_blobs(reader: LayoutReader) -> dict[str, int]:
    """Every blob the index reaches (manifests, configs, layers) that the layout holds."""
    found: dict[str, int] = {}

    def walk(desc: Descriptor, where: str) -> None:
        size = reader.storage.blob_size(desc.digest)
        if size is None or desc.digest in found:
            return
        found[desc.digest] = size
        if mediatypes.is_index(desc.media_type) or desc.media_type in mediatypes.IMAGE_MANIFESTS:
            manifest = reader.manifest(desc.digest, where)
            for child in (*manifest.children, *manifest.blobs):
                walk(child, where)

    for entry in reader.entries:
        walk(entry.descriptor, entry.name or f"index.json entry {entry.number}")
    return found


def seed_blobs(previous: Path, root: Path) -> None:
    """Copy the blobs an earlier archive at ``previous`` reaches into a new layout at ``root``.

    Each is verified on the way (one that does not check out is left to be fetched again);
    ``previous`` not being a readable layout just means nothing is seeded.
    """
    try:
        reader = open_layout(previous)
        blobs = referenced_blobs(reader)
    except MirrorError:
        return
    target = root / "blobs" / "sha256"
    target.mkdir(parents=True, exist_ok=True)
    for digest, size in blobs.items():
        with (
            contextlib.suppress(MirrorError, OSError),
            reader.storage.stream(blob_path(digest)) as chunks,
        ):
            _write_atomic(target / digest.split(":", 1)[1], verified(chunks, digest, size))


def _tar_info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0, 0, 0, "", ""
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    return info


@dataclass(frozen=True)
class PackedLayout:
    """The members of a layout's tar in order, with fixed metadata (the same layout gives the
    same bytes): only the layout files and the blobs the index reaches. Its size is known
    before a byte is written."""

    members: tuple[tuple[tarfile.TarInfo, Path | None], ...]

    @property
    def size(self) -> int:
        """The exact size of the tar: headers, padded data, end blocks and record padding."""
        total = 0
        for info, _ in self.members:
            total += len(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
            total += -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        total += _TRAILER
        return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE

    def write(self, handle: IO[bytes]) -> None:
        """Write the tar into ``handle``."""
        with tarfile.TarFile(
            fileobj=handle, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK
        ) as tar:
            for info, source in self.members:
                if source is None:
                    tar.addfile(info)
                    continue
                with open(source, "rb") as src:
                    tar.addfile(info, src)


def packed_layout(root: Path) -> PackedLayout:
    """What packing the layout at ``root`` puts into its tar."""
    reader = LayoutReader(DirectoryStorage(root), root.name)
    blobs = referenced_blobs(reader)
    members: list[tuple[tarfile.TarInfo, Path | None]] = [
        (_tar_info(name, (root / name).stat().st_size), root / name)
        for name in _LAYOUT_FILES
        if (root / name).is_file()
    ]
    members += [(_tar_info(name, directory=True), None) for name in _LAYOUT_DIRS[1:]]
    members += [
        (_tar_info(blob_path(digest), blobs[digest]), root / blob_path(digest))
        for digest in sorted(blobs)
    ]
    return PackedLayout(tuple(members))


def pack_layout(packed: PackedLayout, output: Path, split_size: int | None = None) -> None:
    """Write the tar at ``output``, or cut into parts of ``split_size`` beside it with their
    parts list. It is written under temporary names, renamed into place once complete."""
    if split_size is not None:
        parts = PartWriter(output, split_size)
        try:
            packed.write(parts)  # type: ignore[arg-type]
            parts.commit()  # synced, with their directory
        except BaseException:
            parts.discard()
            raise
        return
    with _atomic_file(output) as handle:
        packed.write(handle)
    _fsync_dir(output.parent)
