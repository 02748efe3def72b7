"""The choices of one deploy, validated, and the chart values meshlift sets from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deploy.errors import InputError
from mirror.image.lock import ENVIRONMENTS
from mirror.image.reference import TAG_PATTERN, RegistryServer, parse_registry_server
from mirror.net.credentials import GKE_KEY_USERNAME, Credentials

DEFAULT_IMAGE_TAG = "2.0.0"
DEFAULT_NAMESPACE = "nginx-mesh"
# nginx-meshctl's release name: helm list, nginx-meshctl upgrade and remove find the mesh by it.
RELEASE = "nginx-service-mesh"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_namespace(namespace: str, flag: str = "--namespace") -> str:
    """``namespace`` if it is a valid namespace name, else an InputError."""
    if not _DNS_LABEL.match(namespace):
        raise InputError(f"invalid {flag} {namespace!r}: must be a DNS label (a-z, 0-9, -)")
    return namespace


@dataclass(frozen=True)
class Settings:
    """The choices of one deploy, validated."""

    registry_server: str
    server: RegistryServer
    credentials: Credentials | None = None
    disable_public_images: bool = False
    image_tag: str = DEFAULT_IMAGE_TAG
    namespace: str = DEFAULT_NAMESPACE
    environment: str = "kubernetes"
    pin_digests: bool = True
    enforce_registry: str | None = None

    @classmethod
    def parse(
        cls,
        registry_server: str,
        credentials: Credentials | None = None,
        disable_public_images: bool = False,
        image_tag: str = DEFAULT_IMAGE_TAG,
        namespace: str = DEFAULT_NAMESPACE,
        environment: str = "kubernetes",
        pin_digests: bool = True,
        enforce_registry: str | None = None,
    ) -> Settings:
        """Validate flag values; each problem is an InputError naming the flag."""
        server = parse_registry_server(registry_server)
        check_namespace(namespace)
        if not TAG_PATTERN.fullmatch(image_tag):
            raise InputError(f"invalid --image-tag {image_tag!r}")
        if environment not in ENVIRONMENTS:
            raise InputError(f"invalid --environment {environment!r}")
        return cls(
            registry_server,
            server,
            credentials,
            disable_public_images,
            image_tag,
            namespace,
            environment,
            pin_digests,
            enforce_registry,
        )


def chart_values(settings: Settings) -> dict[str, Any]:
    """The chart values meshlift sets (keys of the official chart), credentials included.

    They are what ``nginx-meshctl deploy`` gives the chart, so the release stores them and
    ``nginx-meshctl upgrade`` keeps the private registry and its pull Secret: a GKE key as
    ``registry.key``, else ``registry.username`` and ``registry.password``.
    """
    registry: dict[str, Any] = {
        "server": str(settings.server),
        "imageTag": settings.image_tag,
        "disablePublicImages": settings.disable_public_images,
    }
    credentials = settings.credentials
    if credentials is not None and credentials.username == GKE_KEY_USERNAME:
        registry["key"] = credentials.password
    elif credentials is not None:
        registry.update(username=credentials.username, password=credentials.password)
    return {"registry": registry, "environment": settings.environment}
