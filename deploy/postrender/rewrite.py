"""Point the mesh's images at the private registry, and add the pull secret to pod templates.

Pure functions over plain dicts; nothing here talks to a cluster or a registry.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from deploy.chart.manifests import SAFE_LOADER
from mirror.errors import InvalidReference
from mirror.image.lock import LockEntry
from mirror.image.reference import Reference, RegistryServer, flatten_destination, parse_reference

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


def registry_pins(
    entries: Iterable[LockEntry],
    server: RegistryServer,
    held: Mapping[Reference, str] | None = None,
) -> dict[Reference, str]:
    """The digest R holds for each pinned lock entry, keyed by its reference in R (without
    digest): the lock's, or for a narrowed entry R's own index (``held``, from preflight)."""
    pins: dict[Reference, str] = {}
    for e in entries:
        if e.digest:
            where = flatten_destination(e.source.with_digest(None), server)
            pins[where] = (held or {}).get(where, e.digest)
    return pins


@dataclass(frozen=True)
class ImageRules:
    """How images are rewritten for one deploy.

    ``mesh_names``: last path components of the NGINX Service Mesh images, which always come
    from ``server`` with ``image_tag``. ``locked``: source references (without digest) that
    ``mirror`` copies; with ``disable_public_images`` these come from ``server`` too.
    ``pins``: images under ``server`` (without digest) and the digest the lock pins them to.
    """

    server: RegistryServer
    image_tag: str
    disable_public_images: bool
    mesh_names: frozenset[str]
    locked: frozenset[Reference]
    pins: Mapping[Reference, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_lock(
        cls,
        entries: Iterable[LockEntry],
        server: RegistryServer,
        image_tag: str,
        disable_public_images: bool,
        pin_digests: bool = True,
        held: Mapping[Reference, str] | None = None,
    ) -> ImageRules:
        """Rules for the entries of a lock: its ``nginx-mesh`` component names the mesh images.

        An image is pinned by the digest R holds: the lock's, unless ``held`` (R's digest of a
        narrowed index, keyed by its reference in R) says otherwise.
        """
        entries = tuple(entries)
        pins = registry_pins(entries, server, held) if pin_digests else {}
        return cls(
            server=server,
            image_tag=image_tag,
            disable_public_images=disable_public_images,
            mesh_names=frozenset(
                e.source.last_component for e in entries if e.component == MESH_COMPONENT
            ),
            locked=frozenset(e.source.with_digest(None) for e in entries),
            pins=pins,
        )

    def _mesh(self, ref: Reference) -> Reference:
        return flatten_destination(
            Reference(ref.registry, ref.repository, self.image_tag), self.server
        )

    def _mirrored(self, ref: Reference) -> Reference:
        return flatten_destination(ref.with_digest(None), self.server).with_digest(ref.digest)

    def _pinned(self, ref: Reference) -> str:
        digest = self.pins.get(ref) if ref.digest is None else None
        return str(ref.with_digest(digest) if digest else ref)

    def image(self, text: str) -> str:
        """The image a container should use instead of ``text`` (``text`` itself if unchanged)."""
        try:
            ref = parse_reference(text)
        except InvalidReference:
            return text
        if ref.last_component in self.mesh_names:
            return self._pinned(self._mesh(ref))
        if self.disable_public_images and ref.with_digest(None) in self.locked:
            return self._pinned(self._mirrored(ref))
        return self._pinned(ref) if ref in self.pins else text

    def is_locked(self, text: str) -> bool:
        """Whether ``text`` is exactly a locked source reference (with tag or digest)."""
        if any(c.isspace() for c in text) or not _has_tag_or_digest(text):
            return False
        try:
            ref = parse_reference(text)
        except InvalidReference:
            return False
        return ref.with_digest(None) in self.locked

    def string(self, text: str) -> str:
        """``text`` rewritten if it is exactly a locked source reference (with tag or digest)."""
        if not self.is_locked(text):
            return text
        ref = parse_reference(text)
        if ref.last_component in self.mesh_names:
            return self._pinned(self._mesh(ref))
        return self._pinned(self._mirrored(ref)) if self.disable_public_images else text

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
    """One image reference of one object, before and after rewriting.

    ``place``: ``container NAME`` for a container's image, else where the string is
    (``data meshconfig.json: registry.sidecarImage``, ``env HELPER_IMAGE``).
    """

    where: str
    place: str
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


def _names_an_image(key: object) -> bool:
    return isinstance(key, str) and "image" in key.lower()


def _embedded(text: str) -> list[Any] | None:
    """The JSON or YAML documents inside a ConfigMap value, if it holds mappings or lists."""
    if "\n" not in text and not text.lstrip().startswith(("{", "[")):
        return None
    try:
        docs = [json.loads(text)]
    except ValueError:
        try:
            docs = list(yaml.load_all(text, Loader=SAFE_LOADER))
        except yaml.YAMLError:
            return None
    docs = [d for d in docs if isinstance(d, dict | list)]
    return docs or None


def _replace_reference(text: str, old: str, new: str) -> str:
    return re.sub(rf"(?<![\w./:@-]){re.escape(old)}(?![\w./:@-])", lambda _: new, text)


class _ImageStrings:
    """Finds (and with rules, rewrites) image references in strings outside container images.

    A string is an image when it is exactly a locked reference, or when the key, env name or
    preceding ``--flag`` it comes under names an image and it has a tag or digest. ConfigMap
    values holding JSON or YAML are searched inside.
    """

    def __init__(self, where: str, rules: ImageRules | None) -> None:
        self.where = where
        self.rules = rules
        self.uses: list[ImageUse] = []

    def _string(self, text: str, named: bool, place: str) -> str:
        rules = self.rules
        if rules is not None and rules.is_locked(text):
            new = rules.string(text)
        elif named and _has_tag_or_digest(text) and _is_reference(text):
            new = rules.image(text) if rules is not None else text
        else:
            return text
        self.uses.append(ImageUse(self.where, place, text, new))
        return new

    def visit(
        self, node: Any, place: str, named: bool = False, skip: frozenset[int] = frozenset()
    ) -> Any:
        """``node`` with its image strings rewritten; ``skip``: containers (their image is done)."""
        if isinstance(node, dict):
            env_named = _names_an_image(node.get("name")) and isinstance(node.get("value"), str)
            result = {}
            for key, value in node.items():
                if id(node) in skip and key == "image":
                    result[key] = value
                    continue
                child = f"{place}.{key}" if place else str(key)
                if env_named and key == "value":
                    child, child_named = f"env {node['name']}", True
                else:
                    child_named = _names_an_image(key)
                result[key] = self.visit(value, child, child_named, skip)
            return result
        if isinstance(node, list):
            items: list[Any] = []
            for index, value in enumerate(node):
                previous = node[index - 1] if index else None
                flag_named = isinstance(previous, str) and previous.startswith("-")
                items.append(
                    self.visit(value, place, flag_named and _names_an_image(previous), skip)
                )
            return items
        if isinstance(node, str):
            return self._string(node, named, place)
        return node

    def visit_config_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """ConfigMap ``data``: JSON or YAML values searched inside, others as strings."""
        result: dict[str, Any] = {}
        for key, value in data.items():
            docs = _embedded(value) if isinstance(value, str) else None
            if docs is None:
                result[key] = self.visit(value, f"data {key}", _names_an_image(key))
                continue
            found = len(self.uses)
            for doc in docs:
                self.visit(doc, "")
            for index in range(found, len(self.uses)):
                use = self.uses[index]
                self.uses[index] = ImageUse(
                    self.where, f"data {key}: {use.place}", use.original, use.image
                )
                if use.image != use.original:
                    value = _replace_reference(value, use.original, use.image)
            result[key] = value
        return result


def _is_reference(text: str) -> bool:
    try:
        parse_reference(text)
    except InvalidReference:
        return False
    return True


def _scan(obj: Obj, rules: ImageRules | None) -> tuple[Obj, list[ImageUse]]:
    result = copy.deepcopy(obj)
    where = _where(obj)
    uses: list[ImageUse] = []
    found = [c for spec in pod_specs(result) for c in containers(spec)]
    for container in found:
        image = container.get("image")
        if isinstance(image, str):
            container["image"] = rules.image(image) if rules is not None else image
            uses.append(
                ImageUse(where, f"container {container.get('name')}", image, container["image"])
            )
    strings = _ImageStrings(where, rules)
    skip = frozenset(id(c) for c in found)
    config = result.get("kind") == "ConfigMap" and isinstance(result.get("data"), dict)
    rewritten: Obj = {}
    for key, value in result.items():
        if config and key == "data":
            rewritten[key] = strings.visit_config_data(value)
        else:
            rewritten[key] = strings.visit(value, key, False, skip)
    return rewritten, uses + strings.uses


def image_uses(obj: Obj) -> list[ImageUse]:
    """Every image ``obj`` names: container images, and image strings elsewhere (see above)."""
    return _scan(obj, None)[1]


def rewrite_object(obj: Obj, rules: ImageRules) -> tuple[Obj, list[ImageUse]]:
    """A rewritten copy of ``obj`` and every image it now names.

    Container images and strings naming an image follow :meth:`ImageRules.image`; any other
    string that is exactly a locked reference follows :meth:`ImageRules.string`.
    """
    return _scan(obj, rules)


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
