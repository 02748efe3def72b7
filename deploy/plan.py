"""What ``apply`` sends and ``render`` shows: manifests rewritten for the registry, in order."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from deploy import manifests
from deploy.chart import chart_from_flag, chart_from_lock
from deploy.errors import InputError, PublicImagesLeft
from deploy.helm import ValueFlags, render_chart
from deploy.hooks import DELETE_PHASES, Hook, dump_hooks, split_hooks
from deploy.labels import MESH_LABELS, SECRET_NAME
from deploy.order import apply_order
from deploy.record import Record, kinds_of
from deploy.rewrite import ImageRules, ImageUse, add_pull_secret, disallowed_images, rewrite_object
from deploy.secret import is_registry_secret, redact_secret, registry_secret
from mirror.image.lock import ENVIRONMENTS, Lock, LockEntry, load_lock, resolve_lock_path
from mirror.image.reference import (
    TAG_PATTERN,
    Reference,
    RegistryServer,
    parse_reference,
    parse_registry_server,
)
from mirror.net.credentials import Credentials
from mirror.net.hosts import HostOptions

Obj = dict[str, Any]

DEFAULT_IMAGE_TAG = "2.0.0"
DEFAULT_NAMESPACE = "nginx-mesh"
RELEASE = "nginx-mesh"
PLACEHOLDER_USERNAME = "meshlift"
PLACEHOLDER_PASSWORD = "replaced-by-meshlift"  # our Secret replaces it
NO_VALUES = ValueFlags()
DEFAULT_HOSTS = HostOptions()
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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
        )


def check_namespace(namespace: str, flag: str = "--namespace") -> str:
    """``namespace`` if it is a valid namespace name, else an InputError."""
    if not _DNS_LABEL.match(namespace):
        raise InputError(f"invalid {flag} {namespace!r}: must be a DNS label (a-z, 0-9, -)")
    return namespace


@dataclass(frozen=True)
class Plan:
    """The objects apply sends in apply order, the hooks apart, and every image they name."""

    settings: Settings
    objects: tuple[Obj, ...]
    hooks: tuple[Hook, ...]
    images: tuple[ImageUse, ...]
    renderer: str = ""

    def pull_images(self) -> list[Reference]:
        """Each distinct container image, parsed (for preflight)."""
        return sorted({parse_reference(use.image) for use in self.images})

    def redacted(self) -> list[Obj]:
        """The objects with Secret data redacted, for display."""
        return [redact_secret(obj) for obj in self.objects]

    def redacted_hooks(self) -> list[Hook]:
        """The hooks with Secret data redacted, for display."""
        return [h.with_obj(redact_secret(h.obj)) for h in self.hooks]


def _labelled(obj: Obj, namespace: str) -> Obj:
    meta = obj.setdefault("metadata", {})
    if manifests.is_namespaced(obj):
        meta.setdefault("namespace", namespace)
    meta["labels"] = {**(meta.get("labels") or {}), **MESH_LABELS}
    return obj


def _as_hook(secret: Obj, hook: Obj) -> Obj:
    """Our Secret carrying the hook annotations of the chart's Secret it replaces."""
    annotations = {
        k: v for k, v in hook["metadata"]["annotations"].items() if k.startswith("helm.sh/")
    }
    return {**secret, "metadata": {**secret["metadata"], "annotations": annotations}}


def build_plan(
    objects: Iterable[Obj], entries: Iterable[LockEntry], settings: Settings, renderer: str = ""
) -> Plan:
    """Rewrite, label and order ``objects``; hooks apart; add the Secret and the record.

    With ``--disable-public-images``, an image that would still be pulled from elsewhere is a
    PublicImagesLeft error listing each one. With credentials, our Secret replaces any Secret
    the manifests have under its name (hooks included).
    """
    rules = ImageRules.from_lock(
        entries,
        settings.server,
        settings.image_tag,
        settings.disable_public_images,
        settings.pin_digests,
    )
    ordinary, hooks = split_hooks(objects)
    secret = None
    if settings.credentials is not None:
        secret = registry_secret(settings.registry_server, settings.credentials, settings.namespace)
        ordinary = [o for o in ordinary if not is_registry_secret(o)]
    uses: list[ImageUse] = []

    def prepare(obj: Obj) -> Obj:
        if secret is not None and is_registry_secret(obj):
            return _as_hook(secret, obj)
        new, found = rewrite_object(obj, rules)
        uses.extend(found)
        new = _labelled(new, settings.namespace)
        return add_pull_secret(new, SECRET_NAME) if secret is not None else new

    rewritten = [prepare(o) for o in ordinary]
    planned_hooks = tuple(h.with_obj(prepare(h.obj)) for h in hooks)
    left = disallowed_images(uses, rules)
    if left:
        listed = "; ".join(f"{u.image} ({u.where}, {u.place})" for u in left)
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
    if secret is not None:
        rewritten.append(secret)
    kept = [
        h.with_obj(redact_secret(h.obj))
        for h in planned_hooks
        if set(h.phases) & set(DELETE_PHASES)
    ]
    record = Record(
        namespace=settings.namespace,
        registry_server=settings.registry_server,
        image_tag=settings.image_tag,
        environment=settings.environment,
        disable_public_images=settings.disable_public_images,
        kinds=kinds_of(
            [*rewritten, *(h.obj for h in planned_hooks), {"apiVersion": "v1", "kind": "ConfigMap"}]
        ),
        hooks=dump_hooks(kept) if kept else "",
    )
    rewritten.append(record.to_configmap())
    return Plan(settings, tuple(apply_order(rewritten)), planned_hooks, tuple(uses), renderer)


def chart_values(settings: Settings) -> dict[str, Any]:
    """The chart values meshlift sets (keys of the official chart).

    With credentials, placeholder ones make the chart name our Secret (``registryKeyName``)
    without the password reaching the chart; our Secret replaces the one it renders. Without,
    they are empty: credentials reach the chart only through deploy's own flags.
    """
    given = settings.credentials is not None
    registry: dict[str, Any] = {
        "server": str(settings.server),
        "imageTag": settings.image_tag,
        "disablePublicImages": settings.disable_public_images,
        "username": PLACEHOLDER_USERNAME if given else "",
        "password": PLACEHOLDER_PASSWORD if given else "",
        "key": "",
    }
    return {"registry": registry, "environment": settings.environment}


def load_objects(
    settings: Settings,
    lock: Lock,
    manifest_paths: Sequence[str] = (),
    chart: str | None = None,
    values: ValueFlags = NO_VALUES,
    hosts: HostOptions = DEFAULT_HOSTS,
    stdin: TextIO | None = None,
) -> tuple[list[Obj], str]:
    """The objects to deploy and their renderer: ``--manifests``, ``--chart`` or the lock's."""
    if manifest_paths and chart:
        raise InputError("--manifests and --chart are exclusive")
    if manifest_paths:
        if values != NO_VALUES:
            raise InputError("--set, --set-string, --set-file and --values need a chart")
        return manifests.load_paths(manifest_paths, stdin or sys.stdin), "rendered YAML"
    credentials = settings.credentials
    if chart:
        source = chart_from_flag(chart, settings.server, credentials, hosts)
    else:
        charts = lock.select_charts(settings.environment)
        source = chart_from_lock(charts, settings.server, credentials, hosts)
    rendered = render_chart(source, values, chart_values(settings), RELEASE, settings.namespace)
    return rendered.objects, rendered.renderer


def plan_deploy(
    settings: Settings,
    lock_path: str | None = None,
    manifest_paths: Sequence[str] = (),
    chart: str | None = None,
    stdin: TextIO | None = None,
    values: ValueFlags = NO_VALUES,
    hosts: HostOptions = DEFAULT_HOSTS,
) -> Plan:
    """Load the lock and the chart (or manifests), and build the plan (no cluster)."""
    lock = load_lock(resolve_lock_path(lock_path))
    objects, renderer = load_objects(settings, lock, manifest_paths, chart, values, hosts, stdin)
    return build_plan(objects, lock.entries, settings, renderer)
