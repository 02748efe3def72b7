"""Point the mesh's images at the private registry, and add the pull secret to pod templates.

Pure functions over plain dicts; nothing here talks to a cluster or a registry.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mirror.errors import InvalidReference
from mirror.lock import LockEntry
from mirror.reference import Reference, RegistryServer, flatten_destination, parse_reference

Obj = dict[str, Any]

MESH_COMPONENT = "nginx-mesh"
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
# Where each kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


@dataclass(frozen=True)
class ImageRules:
    """How images are rewritten for one deploy.

    ``mesh_names``: last path components of the NGINX Service Mesh images, which always come
    from ``server`` with ``image_tag``. ``locked``: source references (without digest) that
    ``mirror`` copies; with ``disable_public_images`` these come from ``server`` too.
    """

    server: RegistryServer
    image_tag: str
    disable_public_images: bool
    mesh_names: frozenset[str]
    locked: frozenset[Reference]

    @classmethod
    def from_lock(
        cls,
        entries: Iterable[LockEntry],
        server: RegistryServer,
        image_tag: str,
        disable_public_images: bool,
    ) -> ImageRules:
        """Rules for the entries of a lock: its ``nginx-mesh`` component names the mesh images."""
        entries = tuple(entries)
        return cls(
            server=server,
            image_tag=image_tag,
            disable_public_images=disable_public_images,
            mesh_names=frozenset(
                e.source.last_component for e in entries if e.component == MESH_COMPONENT
            ),
            locked=frozenset(e.source.with_digest(None) for e in entries),
        )

    def _mesh(self, ref: Reference) -> Reference:
        return flatten_destination(
            Reference(ref.registry, ref.repository, self.image_tag), self.server
        )

    def _mirrored(self, ref: Reference) -> Reference:
        return flatten_destination(ref.with_digest(None), self.server).with_digest(ref.digest)

    def image(self, text: str) -> str:
        """The image a container should use instead of ``text`` (``text`` itself if unchanged)."""
        try:
            ref = parse_reference(text)
        except InvalidReference:
            return text
        if ref.last_component in self.mesh_names:
            return str(self._mesh(ref))
        if self.disable_public_images and ref.with_digest(None) in self.locked:
            return str(self._mirrored(ref))
        return text

    def string(self, text: str) -> str:
        """``text`` rewritten if it is exactly a locked source reference (with tag or digest)."""
        if any(c.isspace() for c in text) or not _has_tag_or_digest(text):
            return text
        try:
            ref = parse_reference(text)
        except InvalidReference:
            return text
        if ref.with_digest(None) not in self.locked:
            return text
        if ref.last_component in self.mesh_names:
            return str(self._mesh(ref))
        return str(self._mirrored(ref)) if self.disable_public_images else text

    def is_allowed(self, image: str) -> bool:
        """Whether a (rewritten) image may stay: under the registry, or public images allowed."""
        if not self.disable_public_images:
            return True
        return is_under_registry(image, self.server)


def is_under_registry(image: str, server: RegistryServer) -> bool:
    """Whether ``image`` is pulled from ``server`` (its host, under its path prefix)."""
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return False
    if ref.registry != server.host:
        return False
    return not server.prefix or ref.repository.startswith(f"{server.prefix}/")


def _has_tag_or_digest(text: str) -> bool:
    return "@" in text or ":" in text.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImageUse:
    """One container image of one pod template, before and after rewriting."""

    where: str
    container: str
    original: str
    image: str


def pod_specs(obj: Obj) -> Iterator[Obj]:
    """The pod spec(s) of ``obj``: none for kinds without a pod template."""
    path = POD_SPEC_PATHS.get(str(obj.get("kind")))
    if path is None:
        return
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        yield node


def containers(spec: Obj) -> Iterator[Obj]:
    """Every container, init container and ephemeral container of a pod spec."""
    for field in CONTAINER_FIELDS:
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                yield container


def _where(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {namespace}{meta.get('name')}"


def image_uses(obj: Obj) -> list[ImageUse]:
    """The container images of ``obj``'s pod templates, as they are now."""
    return [
        ImageUse(_where(obj), str(c.get("name")), str(c["image"]), str(c["image"]))
        for spec in pod_specs(obj)
        for c in containers(spec)
        if isinstance(c.get("image"), str)
    ]


def _rewrite_strings(node: Any, rules: ImageRules) -> Any:
    if isinstance(node, dict):
        return {k: _rewrite_strings(v, rules) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_strings(v, rules) for v in node]
    if isinstance(node, str):
        return rules.string(node)
    return node


def rewrite_object(obj: Obj, rules: ImageRules) -> tuple[Obj, list[ImageUse]]:
    """A rewritten copy of ``obj`` and the container images it now uses.

    Container images follow :meth:`ImageRules.image`; every other string (ConfigMap data,
    args, env) follows :meth:`ImageRules.string`.
    """
    result: Obj = _rewrite_strings(obj, rules)
    originals = [c.get("image") for spec in pod_specs(obj) for c in containers(spec)]
    rewritten = [c for spec in pod_specs(result) for c in containers(spec)]
    uses: list[ImageUse] = []
    for container, image in zip(rewritten, originals, strict=True):
        if isinstance(image, str):
            container["image"] = rules.image(image)
            uses.append(
                ImageUse(_where(obj), str(container.get("name")), image, container["image"])
            )
    return result, uses


def disallowed_images(uses: Iterable[ImageUse], rules: ImageRules) -> list[ImageUse]:
    """The uses whose image is not allowed by ``rules`` (public with public images disabled)."""
    return [use for use in uses if not rules.is_allowed(use.image)]


def add_pull_secret(obj: Obj, secret_name: str) -> Obj:
    """A copy of ``obj`` whose pod templates (or, for a ServiceAccount, itself) use the secret."""
    targets: list[Obj]
    result = copy.deepcopy(obj)
    if result.get("kind") == "ServiceAccount" and result.get("apiVersion") == "v1":
        targets = [result]
    else:
        targets = list(pod_specs(result))
    for target in targets:
        secrets = target.setdefault("imagePullSecrets", [])
        if not any(isinstance(s, dict) and s.get("name") == secret_name for s in secrets):
            secrets.append({"name": secret_name})
    return result
