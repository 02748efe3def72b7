"""What is deployed: the mesh's objects, where the Secret is, and images not from the registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.cluster import Cluster
from deploy.errors import InputError
from deploy.labels import MESH_SELECTOR, SECRET_SELECTOR
from deploy.manifests import describe
from deploy.order import rank
from deploy.record import RECORD_NAME, Record, tracked_kinds
from deploy.rewrite import ImageUse, image_uses, is_under_registry
from deploy.rollout import ROLLOUT_KINDS, rollout_state
from mirror.errors import InvalidReference
from mirror.image.reference import parse_registry_server


@dataclass(frozen=True)
class ObjectStatus:
    """One mesh object and, for workloads, its rollout."""

    description: str
    rollout: str = ""
    ready: bool = True


@dataclass
class MeshStatus:
    """The state of the mesh deployed in one namespace."""

    namespace: str
    record: Record | None
    objects: list[ObjectStatus] = field(default_factory=list)
    secret_namespaces: list[str] = field(default_factory=list)
    foreign_images: list[ImageUse] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Deployed, every workload rolled out, and every image from the registry."""
        return (
            self.record is not None
            and all(o.ready for o in self.objects)
            and not self.foreign_images
        )


def mesh_status(cluster: Cluster, namespace: str) -> MeshStatus:
    """Read the mesh in ``namespace``: objects by our labels, the Secret, foreign images."""
    record_map = cluster.get("v1", "ConfigMap", RECORD_NAME, namespace)
    record = Record.from_configmap(record_map) if record_map else None
    status = MeshStatus(namespace, record)
    server = None
    if record and record.registry_server:
        try:
            server = parse_registry_server(record.registry_server)
        except InvalidReference as exc:
            raise InputError(f"the deploy record in {namespace} is damaged: {exc}") from None
    owned = []
    for api_version, kind in tracked_kinds(record):
        if cluster.serves(api_version, kind):
            owned.extend(cluster.list_objects(api_version, kind, label_selector=MESH_SELECTOR))
    for obj in sorted(owned, key=rank):
        if obj["kind"] in ROLLOUT_KINDS:
            state = rollout_state(obj)
            status.objects.append(ObjectStatus(describe(obj), state.detail, state.done))
        else:
            status.objects.append(ObjectStatus(describe(obj)))
        if server is not None:
            status.foreign_images.extend(
                u for u in image_uses(obj) if not is_under_registry(u.image, server)
            )
    secrets = cluster.list_objects("v1", "Secret", label_selector=SECRET_SELECTOR)
    status.secret_namespaces = sorted({s["metadata"]["namespace"] for s in secrets})
    return status
