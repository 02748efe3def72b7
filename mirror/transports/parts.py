"""Archives split into parts (``NAME.tar.001`` …) and their ``NAME.tar.parts.json``.

:class:`PartWriter` cuts one written stream into parts of a fixed size, :func:`open_parts` finds
and checks the parts of an archive (presence, size, sha256) and :class:`PartReader` reads them
back as one seekable file, so the tar reader works unchanged and the whole tar never lands on
disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mirror.errors import ArchiveError, DamagedParts, InputError
from mirror.transports.base import CHUNK

PARTS_SUFFIX = ".parts.json"
PARTS_VERSION = 1
MAX_PARTS_FILE = 4 * 1024 * 1024
HASH_WORKERS = 2
MAX_PARTS = 999
_PART_NUMBER = re.compile(r"^\d{3,}$")

#: Told the part a reader moved into: its number (from 1), the count and its file name.
PartListener = Callable[[int, int, str], None]


def part_name(archive: str, number: int) -> str:
    """``NAME.tar.003``: the file name of part ``number`` (from 1)."""
    return f"{archive}.{number:03d}"


def parts_file(archive: Path) -> Path:
    """Where the parts list of ``archive`` (``NAME.tar``) lives: ``NAME.tar.parts.json``."""
    return archive.with_name(archive.name + PARTS_SUFFIX)


@dataclass(frozen=True)
class Part:
    """One part as the parts list records it."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PartsList:
    """The parts of one archive, in order, and the whole archive's size and sha256."""

    archive: str
    split_size: int
    size: int
    sha256: str
    parts: tuple[Part, ...]

    def to_json(self) -> bytes:
        """The ``parts.json`` document."""
        doc = {
            "version": PARTS_VERSION,
            "archive": self.archive,
            "split_size": self.split_size,
            "size": self.size,
            "sha256": self.sha256,
            "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in self.parts],
        }
        return json.dumps(doc, indent=2).encode() + b"\n"


def parse_parts_list(raw: bytes, where: str) -> PartsList:
    """A ``parts.json`` document, checked for shape (ArchiveError if it is not one)."""
    try:
        doc: dict[str, Any] = json.loads(raw)
        if doc.get("version") != PARTS_VERSION:
            raise ValueError(f"not a parts list of version {PARTS_VERSION}")
        archive = str(doc["archive"])
        parts = tuple(Part(str(p["name"]), int(p["size"]), str(p["sha256"])) for p in doc["parts"])
        expected = tuple(part_name(archive, n) for n in range(1, len(parts) + 1))
        if tuple(p.name for p in parts) != expected or "/" in archive:
            raise ValueError(f"parts are not {archive}.001 … in order")
        listed = PartsList(
            archive, int(doc["split_size"]), int(doc["size"]), str(doc["sha256"]), parts
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArchiveError(f"{where}: not a parts list ({exc})") from None
    if not parts or sum(p.size for p in parts) != listed.size:
        raise ArchiveError(f"{where}: the sizes of the parts do not add up to {listed.size}")
    return listed


def _digest_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


class SplitArchive:
    """The checked parts of one archive, ready to be read as one file."""

    def __init__(self, directory: Path, listing: PartsList) -> None:
        self.directory = directory
        self.listing = listing
        self.listener: PartListener | None = None  # set by whoever shows progress
        self._last = -1

    @property
    def location(self) -> str:
        """How errors and listings name the archive: its parts list."""
        return str(self.directory / (self.listing.archive + PARTS_SUFFIX))

    def open(self) -> IO[bytes]:
        """A new reader over the parts, at the start of the archive (reads are whole across
        part boundaries)."""
        return io.BufferedReader(PartReader(self))

    def entered(self, index: int) -> None:
        """Tell the listener, if any, that a reader moved into another part ``index`` (from 0)
        than the last one it was told of."""
        if self.listener is not None and index != self._last:
            self._last = index
            self.listener(index + 1, len(self.listing.parts), self.listing.parts[index].name)


def split_input(path: Path) -> Path | None:
    """The parts list ``path`` stands for: itself, the one beside a part ``NAME.tar.001``, the
    one a directory without ``oci-layout`` holds, or ``NAME.tar.parts.json`` for a ``NAME.tar``
    that is not there; None if ``path`` is not a split archive."""
    if path.name.endswith(PARTS_SUFFIX):
        return path
    if not path.exists() and parts_file(path).is_file():
        return parts_file(path)
    stem, _, number = path.name.rpartition(".")
    if path.is_file() and _PART_NUMBER.match(number) and stem:
        listed = path.with_name(stem + PARTS_SUFFIX)
        if not listed.is_file():
            raise ArchiveError(f"{path}: a part, but {listed.name} is not beside it")
        return listed
    if path.is_dir() and not (path / "oci-layout").exists():
        found = sorted(path.glob("*" + PARTS_SUFFIX))
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ArchiveError(f"{path}: holds several split archives ({names}); name one")
        return found[0] if found else None
    return None


def open_parts(listed: Path) -> SplitArchive:
    """Read a parts list and check every part: present, of its size, of its sha256.

    Every damaged part is named (DamagedParts, exit 1) before anything reads the archive.
    """
    try:
        with listed.open("rb") as handle:
            raw = handle.read(MAX_PARTS_FILE + 1)
    except OSError as exc:
        raise ArchiveError(f"{listed}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_PARTS_FILE:
        raise ArchiveError(f"{listed}: larger than {MAX_PARTS_FILE} bytes")
    listing = parse_parts_list(raw, str(listed))
    directory = listed.parent
    problems = []
    for part in listing.parts:
        path = directory / part.name
        if not path.is_file():
            problems.append(f"{part.name} missing")
        elif (actual := path.stat().st_size) != part.size:
            problems.append(f"{part.name}: {actual} bytes, expected {part.size}")
    if not problems:
        paths = [directory / part.name for part in listing.parts]
        with ThreadPoolExecutor(HASH_WORKERS) as pool:
            digests = list(pool.map(_digest_of, paths))
        problems = [
            f"{part.name}: sha256 {actual}, expected {part.sha256}"
            for part, actual in zip(listing.parts, digests, strict=True)
            if actual != part.sha256
        ]
    if problems:
        raise DamagedParts(f"{listed}: {'; '.join(problems)}; nothing was read from it")
    return SplitArchive(directory, listing)


class PartReader(io.RawIOBase):
    """The parts of an archive read as one seekable file (parts opened as they are reached)."""

    def __init__(self, archive: SplitArchive) -> None:
        super().__init__()
        self._archive = archive
        self._parts = archive.listing.parts
        self._starts = [0]
        for part in self._parts:
            self._starts.append(self._starts[-1] + part.size)
        self._position = 0
        self._index = -1
        self._handle: IO[bytes] | None = None

    def readable(self) -> bool:
        """Always."""
        return True

    def seekable(self) -> bool:
        """Always."""
        return True

    def tell(self) -> int:
        """The position in the whole archive."""
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move within the whole archive (the part is opened on the next read)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._starts[-1]}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Read from the part holding the position, never past its end."""
        if self._position >= self._starts[-1]:
            return 0
        index = self._part_at(self._position)
        handle = self._handle_for(index)
        handle.seek(self._position - self._starts[index])
        room = min(len(buffer), self._starts[index + 1] - self._position)
        count = handle.readinto(memoryview(buffer)[:room])  # type: ignore[attr-defined]
        if not count:
            raise ArchiveError(f"{self._parts[index].name}: shorter than listed")
        self._position += count
        return int(count)

    def _part_at(self, position: int) -> int:
        index = max(self._index, 0)
        if not self._starts[index] <= position < self._starts[index + 1]:
            index = next(i for i in range(len(self._parts)) if position < self._starts[i + 1])
        return index

    def _handle_for(self, index: int) -> IO[bytes]:
        if index != self._index or self._handle is None:
            if self._handle is not None:
                self._handle.close()
            self._handle = (self._archive.directory / self._parts[index].name).open("rb")
            self._index = index
            self._archive.entered(index)
        return self._handle

    def close(self) -> None:
        """Close the open part."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


def stale_parts(archive: Path, keep: int) -> list[Path]:
    """The ``NAME.tar.NNN`` files beside ``archive`` beyond the first ``keep`` parts, and its
    parts list when ``keep`` is 0: what a run writing ``keep`` parts would leave behind."""
    prefix = archive.name + "."
    found = [
        path
        for path in archive.parent.glob(prefix + "*")
        if _PART_NUMBER.match(path.name[len(prefix) :]) and int(path.name[len(prefix) :]) > keep
    ]
    listed = parts_file(archive)
    if keep == 0 and listed.exists():
        found.append(listed)
    return sorted(found)


def clear_stale(archive: Path, keep: int, force: bool) -> None:
    """Refuse (InputError naming them) parts of an earlier run that ``keep`` parts would leave
    beside the new ones, or remove them with ``force``."""
    stale = stale_parts(archive, keep)
    if stale and not force:
        names = ", ".join(p.name for p in stale)
        raise InputError(
            f"{archive.parent}: {names} of an earlier run would be left beside this one;"
            " remove them or give --force"
        )
    for path in stale:
        path.unlink()


class PartWriter(io.RawIOBase):
    """A file cut into parts of ``split_size`` bytes as it is written.

    Parts go under temporary names; :meth:`commit` renames them into place and writes the
    parts list last, so a reader never finds a list whose parts are unfinished.
    """

    def __init__(self, archive: Path, split_size: int) -> None:
        super().__init__()
        self.archive = archive
        self.split_size = split_size
        self._token = secrets.token_hex(4)
        self._done: list[tuple[Path, Part]] = []
        self._handle: IO[bytes] | None = None
        self._hasher = hashlib.sha256()
        self._whole = hashlib.sha256()
        self._filled = 0
        self._position = 0

    def writable(self) -> bool:
        """Always."""
        return True

    def tell(self) -> int:
        """Bytes written so far."""
        return self._position

    def write(self, data: Any) -> int:
        """Append ``data``, starting a new part whenever one is full."""
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            if self._handle is None:
                self._handle = self._temporary(len(self._done) + 1).open("xb")
            piece = view[written : written + self.split_size - self._filled]
            self._handle.write(piece)
            self._hasher.update(piece)
            self._whole.update(piece)
            self._filled += len(piece)
            written += len(piece)
            if self._filled == self.split_size:
                self._finish_part()
        self._position += written
        return written

    def _temporary(self, number: int) -> Path:
        return self.archive.with_name(f".{part_name(self.archive.name, number)}.{self._token}.part")

    def _finish_part(self) -> None:
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        number = len(self._done) + 1
        part = Part(part_name(self.archive.name, number), self._filled, self._digest(self._hasher))
        self._done.append((self._temporary(number), part))
        self._hasher, self._filled = hashlib.sha256(), 0

    @staticmethod
    def _digest(hasher: Any) -> str:
        return f"sha256:{hasher.hexdigest()}"

    def commit(self) -> PartsList:
        """Finish the last part, rename every part into place, then write the parts list."""
        if self._handle is not None:
            self._finish_part()
        listing = PartsList(
            self.archive.name,
            self.split_size,
            self._position,
            self._digest(self._whole),
            tuple(part for _, part in self._done),
        )
        for temporary, part in self._done:
            os.replace(temporary, self.archive.with_name(part.name))
        listed = parts_file(self.archive)
        temporary = listed.with_name(f".{listed.name}.{self._token}.part")
        with temporary.open("xb") as handle:
            handle.write(listing.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, listed)
        directory = os.open(listed.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return listing

    def discard(self) -> None:
        """Remove the parts written so far (the run did not finish)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for temporary, _ in self._done:
            temporary.unlink(missing_ok=True)
        self._temporary(len(self._done) + 1).unlink(missing_ok=True)


def part_count(size: int, split_size: int) -> int:
    """How many parts an archive of ``size`` bytes takes (at least one; InputError beyond
    MAX_PARTS, where ``NAME.tar.0*`` would no longer list them in order)."""
    count = max(1, -(-size // split_size))
    if count > MAX_PARTS:
        raise InputError(
            f"--split-size {split_size}: {size} bytes would make {count} parts; at most"
            f" {MAX_PARTS}, give a larger size"
        )
    return count


def copy_into_parts(source: IO[bytes], archive: Path, split_size: int) -> PartsList:
    """Split the stream ``source`` into the parts of ``archive``."""
    writer = PartWriter(archive, split_size)
    try:
        while chunk := source.read(CHUNK):
            writer.write(chunk)
        return writer.commit()
    except BaseException:
        writer.discard()
        raise
