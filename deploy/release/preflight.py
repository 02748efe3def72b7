"""Preflight: every image the plan pulls is in the private registry (and signed, given keys)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from deploy.errors import ImagesMissing, ImagesUnsigned
from mirror.image.lock import LockEntry
from mirror.image.reference import Reference, RegistryServer
from mirror.net.credentials import Credentials
from mirror.net.hosts import HostOptions

if TYPE_CHECKING:
    from mirror.image.signature import VerifyKey
    from mirror.transports.registry import RegistryTransport


def missing_images(
    images: Iterable[Reference], exists: Callable[[Reference], bool]
) -> list[Reference]:
    """The images for which ``exists`` says no, in the given order."""
    return [image for image in images if not exists(image)]


def check_images(
    images: Iterable[Reference], exists: Callable[[Reference], bool], server: RegistryServer
) -> None:
    """Raise ImagesMissing (exit 1) listing every image ``exists`` does not find."""
    missing = missing_images(images, exists)
    if missing:
        listed = ", ".join(str(image) for image in missing)
        raise ImagesMissing(
            f"preflight: {len(missing)} image(s) missing from {server}: {listed}."
            f" Copy them with `mirror sync --registry-server {server}`"
            " (or skip this check with --skip-preflight)"
        )


def check_signatures(
    images: Iterable[Reference], unverified: Callable[[Reference], str], server: RegistryServer
) -> None:
    """Raise ImagesUnsigned (exit 1) with the reason for every image ``unverified`` refuses."""
    reasons = [why for why in map(unverified, images) if why]
    if reasons:
        raise ImagesUnsigned(
            f"preflight: {len(reasons)} image(s) in {server} without a valid signature: "
            + "; ".join(reasons)
        )


@contextmanager
def _registry(
    server: RegistryServer, credentials: Credentials | None, hosts: HostOptions
) -> Iterator[RegistryTransport]:
    from mirror.run import PrivateRegistry, open_registries

    with open_registries(hosts, PrivateRegistry(server, credentials)) as transport:
        yield transport


@contextmanager
def registry_lookup(
    server: RegistryServer, credentials: Credentials | None, hosts: HostOptions
) -> Iterator[Callable[[Reference], bool]]:
    """``exists(ref)`` backed by HEAD requests to the registry, with the deploy's credentials."""
    with _registry(server, credentials, hosts) as transport:
        yield lambda ref: transport.head_manifest(ref) is not None


@contextmanager
def registry_signatures(
    server: RegistryServer,
    credentials: Credentials | None,
    hosts: HostOptions,
    keys: Sequence[VerifyKey],
    signed: Mapping[Reference, str] | None = None,
) -> Iterator[Callable[[Reference], str]]:
    """``unverified(ref)``: why the image has no signature valid under ``keys`` ("" if it has).

    ``signed``: for a narrowed index R holds, the source digest its signature names.
    """
    from mirror.attachments import AttachmentReader
    from mirror.errors import MirrorError

    with _registry(server, credentials, hosts) as transport:
        reader = AttachmentReader(transport)

        def unverified(ref: Reference) -> str:
            head = transport.head_manifest(ref)
            if head is None:
                return f"{ref}: not found"
            subject = (signed or {}).get(ref.with_digest(None), head.digest)
            try:
                reader.check(ref, subject, reader.find(ref, ref, [subject]), keys)
            except MirrorError as exc:
                return str(exc)
            return ""

        yield unverified


def held_digests(
    entries: Iterable[LockEntry],
    server: RegistryServer,
    credentials: Credentials | None,
    hosts: HostOptions,
) -> dict[Reference, str]:
    """R's digest of every narrowed entry (``platforms`` in the lock), keyed by its place in R.

    ``mirror sync`` writes a narrowed entry as an index of its own, whose digest is not the
    source's that the lock pins; deploy pins what R holds (mirror's ``held_manifest``, as
    ``mirror verify`` reads it). An entry R lacks is left out: preflight names it missing.
    """
    from mirror.run import plan_jobs
    from mirror.verify import held_manifest

    narrowed = [e for e in entries if e.platforms and e.digest]
    if not narrowed:
        return {}
    held: dict[Reference, str] = {}
    with _registry(server, credentials, hosts) as transport:
        for job in plan_jobs(narrowed, server):
            found = held_manifest(transport, job)
            if found is not None:
                held[job.destination.with_digest(None)] = found.digest
    return held
