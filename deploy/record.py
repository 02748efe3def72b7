"""The record apply keeps in the cluster: what it applied, from where, so remove and status know.

A ConfigMap ``meshlift-deploy`` in the mesh namespace, in the spirit of kubectl's ApplySet
parent: it lists the API kinds apply used; the objects themselves carry our labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from deploy.labels import MESH_LABELS

Obj = dict[str, Any]

RECORD_NAME = "meshlift-deploy"
# The kinds NGINX Service Mesh's chart renders: what remove and status look for without a record.
MESH_KINDS: tuple[tuple[str, str], ...] = (
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apiregistration.k8s.io/v1", "APIService"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("storage.k8s.io/v1", "CSIDriver"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
)


@dataclass(frozen=True)
class Record:
    """What one ``deploy apply`` used."""

    namespace: str
    registry_server: str
    image_tag: str
    environment: str
    disable_public_images: bool
    kinds: tuple[tuple[str, str], ...]  # (apiVersion, kind), sorted
    hooks: str = ""  # the pre-/post-delete hooks as YAML, Secret data redacted

    def to_configmap(self) -> Obj:
        """The ConfigMap apply writes."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": RECORD_NAME,
                "namespace": self.namespace,
                "labels": dict(MESH_LABELS),
            },
            "data": {
                "registry-server": self.registry_server,
                "image-tag": self.image_tag,
                "environment": self.environment,
                "public-images": "disabled" if self.disable_public_images else "enabled",
                "kinds": "".join(f"{api} {kind}\n" for api, kind in self.kinds),
                **({"hooks": self.hooks} if self.hooks else {}),
            },
        }

    @classmethod
    def from_configmap(cls, obj: Obj) -> Record:
        """Read a record back; missing fields read as empty."""
        data = obj.get("data") or {}
        kinds = []
        for line in str(data.get("kinds", "")).splitlines():
            api, _, kind = line.strip().partition(" ")
            if api and kind:
                kinds.append((api, kind))
        return cls(
            namespace=str(obj.get("metadata", {}).get("namespace", "")),
            registry_server=str(data.get("registry-server", "")),
            image_tag=str(data.get("image-tag", "")),
            environment=str(data.get("environment", "")),
            disable_public_images=data.get("public-images") == "disabled",
            kinds=tuple(sorted(set(kinds))),
            hooks=str(data.get("hooks", "")),
        )


def tracked_kinds(record: Record | None) -> tuple[tuple[str, str], ...]:
    """The kinds ``record`` lists; without a record, those NGINX Service Mesh's chart renders."""
    return MESH_KINDS if record is None else record.kinds


def kinds_of(objects: Iterable[Obj]) -> tuple[tuple[str, str], ...]:
    """The sorted distinct (apiVersion, kind) pairs of ``objects``."""
    return tuple(sorted({(str(o["apiVersion"]), str(o["kind"])) for o in objects}))
