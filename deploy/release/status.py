"""What is deployed: the release, its workloads' rollouts, where the Secret is, foreign images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy.chart.manifests import describe, parse_documents
from deploy.cluster.client import Cluster
from deploy.cluster.rollout import ROLLOUT_KINDS, rollout_state
from deploy.errors import InputError
from deploy.labels import SECRET_SELECTOR
from deploy.postrender.rewrite import ImageUse, image_uses, is_under_registry
from deploy.release.helm import Release, Releases
from mirror.errors import InvalidReference
from mirror.image.reference import parse_registry_server

Obj = dict[str, Any]


@dataclass(frozen=True)
class ObjectStatus:
    """One object of the release and, for workloads, its rollout."""

    description: str
    rollout: str = ""
    ready: bool = True


@dataclass
class MeshStatus:
    """The release in one namespace, as the cluster runs it."""

    namespace: str
    release: Release | None
    registry_server: str = ""
    objects: list[ObjectStatus] = field(default_factory=list)
    secret_namespaces: list[str] = field(default_factory=list)
    foreign_images: list[ImageUse] = field(default_factory=list)

    @property
    def state(self) -> str:
        """Helm's status of the latest revision (deployed, failed, ...), or ``none``."""
        return str((self.release or {}).get("status", "none"))

    @property
    def healthy(self) -> bool:
        """Deployed, every workload rolled out, and every image from the registry."""
        return (
            self.state == "deployed"
            and all(o.ready for o in self.objects)
            and not self.foreign_images
        )


def _live(cluster: Cluster, obj: Obj, namespace: str) -> Obj | None:
    """``obj`` as the cluster has it now (images are judged on that), or None if it is gone."""
    if not cluster.serves(obj["apiVersion"], obj["kind"]):
        return None
    resource = cluster.resource(obj["apiVersion"], obj["kind"])
    where = (obj["metadata"].get("namespace") or namespace) if resource.namespaced else None
    return cluster.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], where)


def mesh_status(cluster: Cluster, releases: Releases) -> MeshStatus:
    """Read the release, then each of its objects as the cluster has it now."""
    namespace = releases.namespace
    if not releases.history():
        return MeshStatus(namespace, None)
    release = releases.status()
    server_text = str((releases.user_values().get("registry") or {}).get("server", ""))
    status = MeshStatus(namespace, release, server_text)
    try:
        server = parse_registry_server(server_text) if server_text else None
    except InvalidReference as exc:
        raise InputError(f"the release in {namespace} names a bad registry: {exc}") from None
    for obj in parse_documents(str(release.get("manifest", "")), "the release manifest"):
        live = _live(cluster, obj, namespace)
        if live is None:
            status.objects.append(ObjectStatus(describe(obj), "missing", False))
            continue
        if obj["kind"] in ROLLOUT_KINDS:
            state = rollout_state(live)
            status.objects.append(ObjectStatus(describe(live), state.detail, state.done))
        else:
            status.objects.append(ObjectStatus(describe(live)))
        if server is not None:
            status.foreign_images.extend(
                u for u in image_uses(live) if not is_under_registry(u.image, server)
            )
    secrets = cluster.list_objects("v1", "Secret", label_selector=SECRET_SELECTOR)
    status.secret_namespaces = sorted({s["metadata"]["namespace"] for s in secrets})
    return status
