"""What ``apply`` sends and ``render`` shows: manifests rewritten for the registry, in order."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from deploy import manifests
from deploy.errors import InputError, PublicImagesLeft
from deploy.order import apply_order
from deploy.record import Record, kinds_of
from deploy.rewrite import ImageRules, ImageUse, add_pull_secret, disallowed_images, rewrite_object
from deploy.secret import MESH_LABELS, SECRET_NAME, redact_secret, registry_secret
from mirror.credentials import Credentials
from mirror.lock import LockEntry, load_lock, resolve_lock_path
from mirror.reference import Reference, RegistryServer, parse_reference, parse_registry_server

Obj = dict[str, Any]

DEFAULT_IMAGE_TAG = "2.0.0"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class Settings:
    """The choices of one deploy, validated."""

    registry_server: str
    server: RegistryServer
    credentials: Credentials | None = None
    disable_public_images: bool = False
    image_tag: str = DEFAULT_IMAGE_TAG
    namespace: str = manifests.BUNDLE_NAMESPACE
    environment: str = "kubernetes"

    @classmethod
    def parse(
        cls,
        registry_server: str,
        credentials: Credentials | None = None,
        disable_public_images: bool = False,
        image_tag: str = DEFAULT_IMAGE_TAG,
        namespace: str = manifests.BUNDLE_NAMESPACE,
        environment: str = "kubernetes",
    ) -> Settings:
        """Validate flag values; each problem is an InputError naming the flag."""
        server = parse_registry_server(registry_server)
        check_namespace(namespace)
        if not _TAG.match(image_tag):
            raise InputError(f"invalid --image-tag {image_tag!r}")
        if environment not in manifests.ENVIRONMENTS:
            raise InputError(f"invalid --environment {environment!r}")
        return cls(
            registry_server,
            server,
            credentials,
            disable_public_images,
            image_tag,
            namespace,
            environment,
        )


def check_namespace(namespace: str, flag: str = "--namespace") -> str:
    """``namespace`` if it is a valid namespace name, else an InputError."""
    if not _DNS_LABEL.match(namespace):
        raise InputError(f"invalid {flag} {namespace!r}: must be a DNS label (a-z, 0-9, -)")
    return namespace


@dataclass(frozen=True)
class Plan:
    """The objects apply sends, in apply order, and the container images they use."""

    settings: Settings
    objects: tuple[Obj, ...]
    images: tuple[ImageUse, ...]

    def pull_images(self) -> list[Reference]:
        """Each distinct container image, parsed (for preflight)."""
        return sorted({parse_reference(use.image) for use in self.images})

    def redacted(self) -> list[Obj]:
        """The objects with Secret data redacted, for display."""
        return [redact_secret(obj) for obj in self.objects]


def _labelled(obj: Obj, namespace: str) -> Obj:
    meta = obj.setdefault("metadata", {})
    if manifests.is_namespaced(obj):
        meta.setdefault("namespace", namespace)
    meta["labels"] = {**(meta.get("labels") or {}), **MESH_LABELS}
    return obj


def build_plan(objects: Iterable[Obj], entries: Iterable[LockEntry], settings: Settings) -> Plan:
    """Rewrite, label and order ``objects`` for ``settings``; add the Secret and the record.

    With ``--disable-public-images``, an image that would still be pulled from elsewhere is a
    PublicImagesLeft error listing each one.
    """
    rules = ImageRules.from_lock(
        entries, settings.server, settings.image_tag, settings.disable_public_images
    )
    rewritten: list[Obj] = []
    uses: list[ImageUse] = []
    for obj in objects:
        new, obj_uses = rewrite_object(obj, rules)
        rewritten.append(_labelled(new, settings.namespace))
        uses.extend(obj_uses)
    left = disallowed_images(uses, rules)
    if left:
        listed = "; ".join(f"{u.image} ({u.where}, container {u.container})" for u in left)
        raise PublicImagesLeft(
            f"--disable-public-images: {len(left)} image(s) not under {settings.server}: {listed}."
            " Add them to images.lock and run `mirror sync`, or fix the manifests"
        )
    if not any(
        o["kind"] == "Namespace" and o["metadata"]["name"] == settings.namespace for o in rewritten
    ):
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": settings.namespace},
        }
        rewritten.insert(0, _labelled(namespace, settings.namespace))
    if settings.credentials is not None:
        rewritten = [add_pull_secret(o, SECRET_NAME) for o in rewritten]
        rewritten.append(
            registry_secret(settings.registry_server, settings.credentials, settings.namespace)
        )
    record = Record(
        namespace=settings.namespace,
        registry_server=settings.registry_server,
        image_tag=settings.image_tag,
        environment=settings.environment,
        disable_public_images=settings.disable_public_images,
        kinds=kinds_of([*rewritten, {"apiVersion": "v1", "kind": "ConfigMap"}]),
    )
    rewritten.append(record.to_configmap())
    return Plan(settings, tuple(apply_order(rewritten)), tuple(uses))


def load_objects(
    settings: Settings,
    manifest_paths: Sequence[str] = (),
    chart: str | None = None,
    stdin: TextIO | None = None,
) -> list[Obj]:
    """The manifests to deploy: ``--manifests``, else ``--chart``, else the embedded bundle."""
    if manifest_paths and chart:
        raise InputError("--manifests and --chart are exclusive")
    if manifest_paths:
        return manifests.load_paths(manifest_paths, stdin or sys.stdin)
    if chart:
        values = manifests.chart_values(
            str(settings.server),
            settings.image_tag,
            settings.disable_public_images,
            settings.environment,
        )
        return manifests.render_chart(chart, settings.namespace, values)
    return manifests.load_bundle(settings.environment, settings.namespace)


def plan_deploy(
    settings: Settings,
    lock_path: str | None = None,
    manifest_paths: Sequence[str] = (),
    chart: str | None = None,
    stdin: TextIO | None = None,
) -> Plan:
    """Load the lock and the manifests, and build the plan (no cluster, no registry)."""
    lock = load_lock(resolve_lock_path(lock_path))
    return build_plan(load_objects(settings, manifest_paths, chart, stdin), lock.entries, settings)
