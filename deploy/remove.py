"""Remove what apply and propagate made: tracked by our labels and the record, never guessed.

Order: the ``pre-delete`` hooks apply recorded, the objects apply labelled (workloads first,
CRDs last, and a CRD only when no custom resource of it is left that someone else made), every
Secret labelled ``usage=nginx-mesh-registry-key`` in any namespace, the pull-secret entries
propagate added to service accounts, the ``post-delete`` hooks, and finally the mesh namespace,
only when apply created it and nothing made by others is left in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deploy.cluster import Cluster
from deploy.errors import ClusterError
from deploy.hookrun import recorded_hooks, run_hooks
from deploy.labels import (
    ACCOUNT_SECRET_ANNOTATION,
    MESH_LABELS,
    MESH_SELECTOR,
    PULL_SECRET_LABEL,
    SECRET_NAME,
    SECRET_SELECTOR,
    created_by_us,
)
from deploy.manifests import describe
from deploy.order import rank
from deploy.record import RECORD_NAME, Record, tracked_kinds

Obj = dict[str, Any]

# Kinds the cluster itself keeps in a namespace; they never keep a namespace alive.
CLUSTER_MADE_KINDS = frozenset(
    {"Event", "Endpoints", "EndpointSlice", "Lease", "PodMetrics", "ControllerRevision"}
)
# What Kubernetes and OpenShift put in every namespace, and our record.
_CLUSTER_MADE_OBJECTS = frozenset(
    {
        ("ServiceAccount", "default"),
        ("ConfigMap", "kube-root-ca.crt"),
        ("ConfigMap", RECORD_NAME),
        ("ServiceAccount", "builder"),
        ("ServiceAccount", "deployer"),
        ("ConfigMap", "openshift-service-ca.crt"),
        ("RoleBinding", "system:image-pullers"),
        ("RoleBinding", "system:image-builders"),
        ("RoleBinding", "system:deployers"),
    }
)


@dataclass
class Removal:
    """What remove did, and what it left and why."""

    deleted: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _made_by_others(obj: Obj, claims: frozenset[str] = frozenset()) -> bool:
    """Whether someone other than meshlift or the cluster itself made ``obj``.

    Owned objects (``ownerReferences``), the platform's defaults, service-account Secrets and
    the claims of our StatefulSets (``claims``: see :func:`_claims_of`) count as made by the
    cluster.
    """
    meta = obj.get("metadata") or {}
    kind = obj.get("kind")
    return not (
        kind in CLUSTER_MADE_KINDS
        or meta.get("ownerReferences")
        or meta.get("deletionTimestamp")
        or (kind, meta.get("name")) in _CLUSTER_MADE_OBJECTS
        or (kind == "Secret" and ACCOUNT_SECRET_ANNOTATION in (meta.get("annotations") or {}))
        or (kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token")
        or (kind == "PersistentVolumeClaim" and _is_claim(str(meta.get("name")), claims))
    )


def _claims_of(statefulsets: list[Obj]) -> frozenset[str]:
    """Name prefixes of the claims the controller makes for ``statefulsets``: TEMPLATE-STS-."""
    return frozenset(
        f"{template['metadata']['name']}-{sts['metadata']['name']}-"
        for sts in statefulsets
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []
    )


def _is_claim(name: str, prefixes: frozenset[str]) -> bool:
    return any(name.startswith(p) and name.removeprefix(p).isdigit() for p in prefixes)


def custom_resources_left(cluster: Cluster, crd: Obj) -> list[Obj]:
    """Custom resources of ``crd`` that someone else made (not owned by another object)."""
    spec = crd.get("spec") or {}
    versions = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    kind = (spec.get("names") or {}).get("kind")
    if not versions or not kind:
        return []
    api_version = f"{spec['group']}/{versions[0]}"
    if not cluster.serves(api_version, kind):
        return []
    return [o for o in cluster.list_objects(api_version, kind) if _made_by_others(o)]


def objects_left(
    cluster: Cluster, namespace: str, claims: frozenset[str] = frozenset()
) -> list[Obj]:
    """Objects in ``namespace`` that meshlift did not make and the cluster did not make."""
    left: list[Obj] = []
    for api_version, kind in cluster.namespaced_kinds():
        if kind in CLUSTER_MADE_KINDS:
            continue
        try:
            found = cluster.list_objects(api_version, kind, namespace)
        except ClusterError as exc:
            if exc.status in (403, 404, 405):  # not listable for us: cannot be judged
                continue
            raise
        left.extend(o for o in found if _made_by_others(o, claims))
    return left


def _drop_pull_secret(account: Obj) -> bool:
    secrets = account.get("imagePullSecrets") or []
    kept = [s for s in secrets if s.get("name") != SECRET_NAME]
    labels = account["metadata"].get("labels") or {}
    if kept == secrets and PULL_SECRET_LABEL not in labels:
        return False
    account["imagePullSecrets"] = kept
    account["metadata"]["labels"] = {k: v for k, v in labels.items() if k != PULL_SECRET_LABEL}
    return True


def _drop_mesh_labels(namespace: Obj) -> bool:
    labels = namespace["metadata"].get("labels") or {}
    if not any(labels.get(k) == v for k, v in MESH_LABELS.items()):
        return False
    namespace["metadata"]["labels"] = {k: v for k, v in labels.items() if MESH_LABELS.get(k) != v}
    return True


def remove_mesh(
    cluster: Cluster,
    namespace: str,
    on_deleted: Callable[[str], None] = lambda _: None,
    timeout: float = 300.0,
    on_hook: Callable[[str], None] = lambda _: None,
) -> Removal:
    """Remove the mesh deployed in ``namespace``; see the module docstring for the order."""
    removal = Removal()
    deadline = time.monotonic() + timeout
    hooks = recorded_hooks(cluster, namespace)
    run_hooks(cluster, hooks, "pre-delete", deadline, on_hook)

    def deleted(obj: Obj) -> None:
        meta = obj["metadata"]
        if cluster.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")):
            removal.deleted.append(describe(obj))
            on_deleted(describe(obj))

    found = cluster.get("v1", "ConfigMap", RECORD_NAME, namespace)
    owned: list[Obj] = []
    for api_version, kind in tracked_kinds(Record.from_configmap(found) if found else None):
        if kind in ("Namespace", "Secret") or not cluster.serves(api_version, kind):
            continue
        owned.extend(cluster.list_objects(api_version, kind, label_selector=MESH_SELECTOR))
    record = [o for o in owned if o["kind"] == "ConfigMap" and o["metadata"]["name"] == RECORD_NAME]
    for obj in sorted((o for o in owned if o not in record), key=rank, reverse=True):
        if obj["kind"] == "CustomResourceDefinition":
            left = custom_resources_left(cluster, obj)
            if left:
                removal.kept.append(
                    f"{describe(obj)}: {len(left)} custom resource(s) made by others remain,"
                    f" e.g. {describe(left[0])}"
                )
                continue
        deleted(obj)
    for secret in cluster.list_objects("v1", "Secret", label_selector=SECRET_SELECTOR):
        deleted(secret)
    for account in cluster.list_objects("v1", "ServiceAccount", label_selector=PULL_SECRET_LABEL):
        meta = account["metadata"]
        name, where = meta["name"], meta["namespace"]
        if cluster.update("v1", "ServiceAccount", name, where, _drop_pull_secret):
            removal.cleaned.append(f"ServiceAccount {where}/{name}")
    run_hooks(cluster, hooks, "post-delete", deadline, on_hook)
    claims = _claims_of([o for o in owned if o["kind"] == "StatefulSet"])
    _remove_namespace(cluster, namespace, removal, deleted, record, claims)
    return removal


def _remove_namespace(
    cluster: Cluster,
    namespace: str,
    removal: Removal,
    deleted: Callable[[Obj], None],
    record: list[Obj],
    claims: frozenset[str],
) -> None:
    found = cluster.get("v1", "Namespace", namespace)
    if found is None:
        return
    if found["metadata"].get("deletionTimestamp"):
        removal.kept.append(f"Namespace {namespace}: being deleted already")
        return
    created = created_by_us(found)
    left = objects_left(cluster, namespace, claims)
    if created and not left:
        deleted(found)
        return
    for obj in record:
        deleted(obj)
    reason = "deploy apply created it, but" if created else "deploy apply did not create it;"
    listed = ", ".join(describe(o) for o in left) or "nothing else"
    removal.kept.append(
        f"Namespace {namespace}: {reason} {len(left)} other object(s) remain: {listed}"
    )
    if cluster.update("v1", "Namespace", namespace, None, _drop_mesh_labels):
        removal.cleaned.append(f"Namespace {namespace}")
