"""Incremental archives: what a base holds, what a delta carries and relies on, inventories.

A delta is an OCI image layout whose ``index.json`` names every artifact as a full archive does,
but holds only the manifests and blobs its base lacks. Its ``index.json`` annotations record the
base (file name and identity: the digest of the base's ``index.json``, or of the inventory file)
and, on each entry, the descriptors that entry relies on the base for. Everything works on what
``index.json`` reaches, so any kind of artifact named there is covered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror.copy import BlobLedger, ImageCopier
from mirror.errors import ArchiveError, InputError, MirrorError
from mirror.image import mediatypes
from mirror.image.digest import sha256_digest, validate_digest
from mirror.image.lock import LockEntry, plan_destinations
from mirror.image.manifest import MAX_MANIFEST_BYTES, Descriptor, Manifest
from mirror.image.reference import Reference
from mirror.net.hosts import HostOptions
from mirror.net.retry import Cancellation
from mirror.run import (
    DEFAULT_JOBS,
    CopyEvents,
    CopyJob,
    CopyOptions,
    PrivateRegistry,
    open_registries,
    run_parallel,
)
from mirror.transports.layout import (
    INDEX_FILE,
    DirectoryStorage,
    LayoutReader,
    LayoutStorage,
    LayoutWriter,
    blob_path,
    open_layout,
    read_manifest,
    referenced_blobs,
)
from mirror.transports.registry import RegistryTransport

BASES = "io.meshlift.delta.bases"
RELIES_ON = "io.meshlift.delta.relies-on"
INVENTORY_VERSION = 1
HEAD_WORKERS = 8


@dataclass(frozen=True)
class Base:
    """An archive or inventory a delta was written against."""

    name: str
    identity: str

    def __str__(self) -> str:
        return f"{self.name} ({self.identity})"


@dataclass(frozen=True)
class Holdings:
    """What the destination holds once the bases are loaded: digests of manifests and blobs."""

    bases: tuple[Base, ...]
    digests: frozenset[str]

    def __add__(self, other: Holdings) -> Holdings:
        return Holdings(self.bases + other.bases, self.digests | other.digests)


def _descriptor(raw: dict[str, Any]) -> Descriptor:
    digest = validate_digest(str(raw["digest"]))
    return Descriptor(str(raw.get("mediaType", "")), digest, int(raw["size"]))


def _encode(descs: Iterable[Descriptor]) -> list[dict[str, Any]]:
    return [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in descs]


def reachable(top: Descriptor, read: Callable[[str], Manifest]) -> list[Descriptor]:
    """``top`` and every manifest and blob below it, once each (``read`` fetches a manifest)."""
    found: dict[str, Descriptor] = {}
    pending = [top]
    while pending:
        desc = pending.pop()
        if desc.digest in found or desc.raw.get("urls"):
            continue
        found[desc.digest] = desc
        if desc is top or desc.media_type in mediatypes.MANIFESTS:
            manifest = read(desc.digest)
            pending += [*manifest.children, *manifest.blobs]
    return list(found.values())


def _index_document(storage: LayoutStorage) -> tuple[bytes, dict[str, Any]]:
    raw = storage.read_file(INDEX_FILE, MAX_MANIFEST_BYTES)
    if raw is None:
        raise ArchiveError(f"{storage.location}: not an OCI image layout (no index.json)")
    return raw, json.loads(raw)


def _relied(entry_raw: dict[str, Any], where: str) -> list[Descriptor]:
    annotations = entry_raw.get("annotations")
    text = annotations.get(RELIES_ON) if isinstance(annotations, dict) else None
    if text is None:
        return []
    try:
        return [_descriptor(d) for d in json.loads(text)]
    except (ValueError, TypeError, KeyError, InputError) as exc:
        raise ArchiveError(f"{where}: index.json: unreadable {RELIES_ON} ({exc})") from None


@dataclass
class DeltaContents:
    """A delta's bases, what it carries and what it relies on (counts and bytes)."""

    bases: list[Base]
    carried: int
    carried_size: int
    relied_on: int
    relied_on_size: int
    relies: dict[str, list[Descriptor]] = field(default_factory=dict, repr=False)

    @property
    def relied_digests(self) -> set[str]:
        """Every digest some entry relies on the base for."""
        return {d.digest for descs in self.relies.values() for d in descs}

    def as_json(self) -> dict[str, Any]:
        """The same for ``--output json``."""
        return {
            "bases": [{"name": b.name, "identity": b.identity} for b in self.bases],
            "carried": {"objects": self.carried, "size": self.carried_size},
            "relied_on": {"objects": self.relied_on, "size": self.relied_on_size},
        }


def read_delta(layout: LayoutReader) -> DeltaContents | None:
    """What a delta holds and relies on, or None for a self-contained archive."""
    where = layout.storage.location
    _, doc = _index_document(layout.storage)
    annotations = doc.get("annotations")
    text = annotations.get(BASES) if isinstance(annotations, dict) else None
    if text is None:
        return None
    try:
        bases = [Base(str(b["name"]), str(b["identity"])) for b in json.loads(text)]
    except (ValueError, TypeError, KeyError) as exc:
        raise ArchiveError(f"{where}: index.json: unreadable {BASES} ({exc})") from None
    relies = {
        entry.name or f"index.json entry {entry.number}": _relied(entry.descriptor.raw, where)
        for entry in layout.entries
    }
    relied = {d.digest: d.size for descs in relies.values() for d in descs}
    carried = referenced_blobs(layout)
    return DeltaContents(
        bases, len(carried), sum(carried.values()), len(relied), sum(relied.values()), relies
    )


def archive_holdings(path: str) -> Holdings:
    """What loading the archive at ``path`` (and, for a delta, its bases) leaves at a registry."""
    layout = open_layout(path)
    raw, _ = _index_document(layout.storage)
    held = set(referenced_blobs(layout))
    delta = read_delta(layout)
    if delta is not None:
        held |= delta.relied_digests
    return Holdings((Base(Path(path).name, sha256_digest(raw)),), frozenset(held))


def inventory_holdings(path: str) -> Holdings:
    """The manifests and blobs an inventory written by ``mirror inventory`` lists."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"--have {path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
        if doc.get("inventory") != INVENTORY_VERSION:
            raise ValueError(f"not an inventory of version {INVENTORY_VERSION}")
        digests = {
            validate_digest(str(d["digest"]))
            for image in doc["images"]
            for d in (*image["manifests"], *image["blobs"])
        }
    except (ValueError, TypeError, KeyError, AttributeError, InputError) as exc:
        raise InputError(f"--have {path}: not a mirror inventory ({exc})") from None
    return Holdings((Base(Path(path).name, sha256_digest(raw)),), frozenset(digests))


class DeltaWriter(LayoutWriter):
    """A layout written against ``holdings``: held blobs are neither fetched nor kept."""

    def __init__(self, root: Path, holdings: Holdings) -> None:
        super().__init__(root)
        self.holdings = holdings

    def has_blob(self, ref: Reference, desc: Descriptor) -> bool:
        """A held blob counts as present, so the copy does not fetch it."""
        return desc.digest in self.holdings.digests or super().has_blob(ref, desc)

    def commit(self, lock_text: str | None) -> None:
        """Annotate each entry with what it relies on, drop held files, then write the index."""
        storage = DirectoryStorage(self.root)
        held = self.holdings.digests

        def read(digest: str) -> Manifest:
            return read_manifest(storage, digest, digest)

        dropped: set[str] = set()
        for raw in self.descriptors():
            try:
                needed = reachable(_descriptor(raw), read)
            except MirrorError:  # a held manifest dropped by an earlier run: keep its record
                continue
            relied = [d for d in needed if d.digest in held]
            raw.setdefault("annotations", {})[RELIES_ON] = json.dumps(_encode(relied))
            dropped.update(d.digest for d in relied)
        for digest in dropped:
            (self.root / blob_path(digest)).unlink(missing_ok=True)
        bases = [{"name": b.name, "identity": b.identity} for b in self.holdings.bases]
        self.annotations[BASES] = json.dumps(bases)
        super().commit(lock_text)


def writer_for(root: Path, holdings: Holdings | None) -> LayoutWriter:
    """A delta writer against ``holdings``, or a plain layout writer."""
    return DeltaWriter(root, holdings) if holdings else LayoutWriter(root)


def refuse_delta(layout: LayoutReader, flag: str) -> None:
    """InputError if ``layout`` is a delta: ``flag`` needs a self-contained archive."""
    delta = read_delta(layout)
    if delta is not None:
        bases = " and ".join(map(str, delta.bases))
        raise InputError(
            f"{layout.storage.location} is a delta on {bases}; {flag} needs a full archive"
            " (load the delta into the registry that holds its base)"
        )


class BaseMissing(MirrorError):
    """A delta's base is not (wholly) at the destination: nothing was loaded."""


def check_base(
    archive: str,
    delta: DeltaContents,
    jobs: dict[str, Reference],
    registry: RegistryTransport,
    cancel: Cancellation,
) -> tuple[dict[str, Reference], set[str]]:
    """Where at the destination each object the delta relies on is (HEAD, in parallel), and
    which of them some repository relying on them lacks.

    ``jobs`` maps each entry name to its destination. An object counts as present if any
    repository relying on it holds it. BaseMissing names the base if anything is missing.
    """
    wanted = [
        (destination, desc)
        for name, destination in jobs.items()
        for desc in delta.relies.get(name, ())
    ]

    def head(item: tuple[Reference, Descriptor]) -> bool:
        destination, desc = item
        if desc.media_type in mediatypes.MANIFESTS:
            return registry.head_manifest(destination.with_digest(desc.digest)) is not None
        return registry.has_blob(destination, desc)

    present = run_parallel(head, wanted, HEAD_WORKERS, cancel, "base")
    located: dict[str, Reference] = {}
    lacking: set[str] = set()
    for (destination, desc), here in zip(wanted, present, strict=True):
        if here:
            located.setdefault(desc.digest, destination)
        else:
            lacking.add(desc.digest)
    missing = {desc.digest for _, desc in wanted} - set(located)
    if missing:
        bases = " and ".join(map(str, delta.bases))
        names = " and ".join(b.name for b in delta.bases)
        raise BaseMissing(
            f"{Path(archive).name} is a delta on {bases}: {len(missing)} objects it relies on"
            f" are missing at the destination; load {names} first (nothing was pushed or tagged)"
        )
    return located, lacking


def delta_copier(
    layout: LayoutReader,
    jobs: Sequence[CopyJob],
    registry: RegistryTransport,
    events: CopyEvents,
    options: CopyOptions,
) -> ImageCopier | None:
    """For a delta, check its base is at the destination (BaseMissing if not), then a copier
    taking what it relies on from there; None for a self-contained archive."""
    delta = read_delta(layout)
    if delta is None:
        return None
    destinations = {}
    for job in jobs:
        entry = layout.find(job.source)
        if entry is not None and entry.name is not None:
            destinations[entry.name] = job.destination
    where = layout.storage.location
    located, lacking = check_base(where, delta, destinations, registry, options.cancel)
    ledger = BlobLedger()  # where to mount the base's blobs from, for repositories lacking them
    for digest in lacking:
        ledger.release(digest, located[digest])
    source = DeltaSource(layout, registry, located)
    return ImageCopier(source, registry, events, options, ledger)


class DeltaSource:
    """A delta as a copy source: manifests and blobs it relies on come from the destination."""

    name = "layout"

    def __init__(
        self, layout: LayoutReader, registry: RegistryTransport, located: dict[str, Reference]
    ) -> None:
        self.layout = layout
        self.registry = registry
        self.located = located

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor the delta's index names ``ref`` with."""
        return self.layout.head_manifest(ref)

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """From the delta if it carries it, else from where the base put it."""
        where = self.located.get(digest or "")
        if where is not None and self.layout.storage.blob_size(digest or "") is None:
            return self.registry.get_manifest(where, digest)
        return self.layout.get_manifest(ref, digest)

    def open_blob(
        self, ref: Reference, desc: Descriptor
    ) -> AbstractContextManager[Iterator[bytes]]:
        """A blob the delta carries, else one it relies on, read from where the base put it
        (for a registry that answers a mount with an upload session instead)."""
        where = self.located.get(desc.digest)
        if where is not None and self.layout.storage.blob_size(desc.digest) is None:
            return self.registry.open_blob(where, desc)
        return self.layout.open_blob(ref, desc)


def take_inventory(
    entries: Sequence[LockEntry],
    destination: PrivateRegistry,
    hosts: HostOptions,
    *,
    jobs: int = DEFAULT_JOBS,
    cancel: Cancellation | None = None,
) -> dict[str, Any]:
    """What the destination holds of each entry: its manifests, and the blobs they reference
    that HEAD finds (no blob is downloaded)."""
    cancel = cancel or Cancellation()
    planned = plan_destinations(entries, destination.server)
    with open_registries(hosts, destination, cancel=cancel) as registry:
        registry.ping(d for _, d in planned)

        def survey(pair: tuple[LockEntry, Reference]) -> dict[str, Any]:
            entry, ref = pair
            head = registry.head_manifest(ref)
            if head is None and entry.digest:
                head = registry.head_manifest(ref.with_digest(entry.digest))
            found = reachable(head, lambda d: registry.get_manifest(ref, d)) if head else []
            manifests = [d for d in found if d is head or d.media_type in mediatypes.MANIFESTS]
            blobs = [d for d in found if d not in manifests and registry.has_blob(ref, d)]
            return {
                "source": str(entry.source),
                "destination": str(ref),
                "digest": head.digest if head else None,
                "manifests": _encode(manifests),
                "blobs": _encode(blobs),
            }

        images = run_parallel(survey, planned, jobs, cancel, "inventory")
    return {"inventory": INVENTORY_VERSION, "registry": str(destination.server), "images": images}


def write_inventory(path: str, inventory: dict[str, Any]) -> str:
    """Write an inventory as JSON; return the line that sums it up."""
    try:
        Path(path).write_text(json.dumps(inventory, indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"--output {path}: cannot write: {exc.strerror or exc}") from None
    images = inventory["images"]
    present = sum(1 for i in images if i["digest"])
    manifests = len({d["digest"] for i in images for d in i["manifests"]})
    blobs = len({d["digest"] for i in images for d in i["blobs"]})
    return (
        f"{path}: {present} of {len(images)} images at {inventory['registry']}"
        f" ({manifests} manifests, {blobs} blobs)"
    )


def holdings_of(since: str | None, have: str | None, output: Path) -> Holdings | None:
    """What ``save --since BASE`` and/or ``--have HAVE.json`` say the far side holds."""
    if since and Path(since).resolve() == output.resolve():
        raise InputError(f"--since {since}: give an earlier archive, not the one being written")
    parts = [archive_holdings(since)] if since else []
    if have:
        parts.append(inventory_holdings(have))
    return sum(parts[1:], parts[0]) if parts else None


def archive_size(path: Path) -> int:
    """The bytes an archive (tar file or layout directory) takes on disk."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)
