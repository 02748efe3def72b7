"""Preflight: every image the plan pulls must already be in the private registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from deploy.errors import ImagesMissing
from mirror.credentials import Credentials
from mirror.hosts import HostOptions
from mirror.reference import Reference, RegistryServer


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


@contextmanager
def registry_lookup(
    server: RegistryServer, credentials: Credentials | None, hosts: HostOptions
) -> Iterator[Callable[[Reference], bool]]:
    """``exists(ref)`` backed by HEAD requests to the registry, with the deploy's credentials."""
    from mirror.auth import CredentialStore
    from mirror.registry import RegistryClient, RegistryTransport

    explicit = {server.host: credentials} if credentials else {}
    client = RegistryClient(hosts, CredentialStore(explicit, hosts.auth_file))
    with RegistryTransport(client) as transport:
        yield lambda ref: transport.head_manifest(ref) is not None
