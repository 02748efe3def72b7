"""What ``nginx-meshctl remove`` does after Helm's uninstall, and what meshlift added besides.

In order: the CRDs labelled ``app.kubernetes.io/part-of=nginx-service-mesh`` (but not one whose
custom resources others made: deleting it would delete them), every Secret
labelled ``usage=nginx-mesh-registry-key`` in any namespace, the pull-secret entries propagate
added to service accounts, and the mesh namespace, only when deploy created it and nothing
made by others can remain there: a kind that may not be listed counts as "might remain".
It never deletes an object the release owned (Helm did) or one without those labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deploy.chart.manifests import describe
from deploy.cluster.client import Cluster
from deploy.errors import ClusterError
from deploy.labels import (
    ACCOUNT_SECRET_ANNOTATION,
    LEGACY_RECORD,
    PART_OF_SELECTOR,
    PULL_SECRET_LABEL,
    SECRET_NAME,
    SECRET_SELECTOR,
    SIDECAR_CONTAINER,
    created_by_us,
)
from deploy.postrender.rewrite import containers, pod_specs

Obj = dict[str, Any]

# Kinds the cluster itself keeps in a namespace; they never keep a namespace alive.
CLUSTER_MADE_KINDS = frozenset(
    {"Event", "Endpoints", "EndpointSlice", "Lease", "PodMetrics", "ControllerRevision"}
)
# What Kubernetes and OpenShift put in every namespace.
_CLUSTER_MADE_OBJECTS = frozenset(
    {
        ("ServiceAccount", "default"),
        ("ConfigMap", "kube-root-ca.crt"),
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
    """What remove did, what it left and why, and the workloads that still run a sidecar."""

    deleted: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)


def claims_of(objects: list[Obj]) -> frozenset[str]:
    """Name prefixes of the claims a StatefulSet controller made for ``objects``' StatefulSets:
    ``TEMPLATE-STS-`` (they outlive the StatefulSet, as on a real cluster)."""
    return frozenset(
        f"{template['metadata']['name']}-{sts['metadata']['name']}-"
        for sts in objects
        if sts.get("kind") == "StatefulSet"
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []
    )


def _is_claim(name: str, prefixes: frozenset[str]) -> bool:
    return any(name.startswith(p) and name.removeprefix(p).isdigit() for p in prefixes)


def _made_by_others(obj: Obj, claims: frozenset[str] = frozenset()) -> bool:
    """Whether someone other than the mesh or the cluster itself made ``obj`` (``claims``:
    see :func:`claims_of`)."""
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


def objects_left(
    cluster: Cluster, namespace: str, claims: frozenset[str] = frozenset()
) -> tuple[list[Obj], list[str]]:
    """Objects in ``namespace`` made by others, and the kinds that could not be listed."""
    left: list[Obj] = []
    unknown: list[str] = []
    for api_version, kind in cluster.namespaced_kinds():
        if kind in CLUSTER_MADE_KINDS:
            continue
        try:
            found = cluster.list_objects(api_version, kind, namespace)
        except ClusterError as exc:
            if exc.status == 404:  # the kind went with its CRD: nothing of it is left
                continue
            if exc.status in (403, 405):  # not ours to list: something may remain
                unknown.append(f"{kind} ({api_version})")
                continue
            raise
        left.extend(o for o in found if _made_by_others(o, claims))
    return left, unknown


def custom_resources_left(cluster: Cluster, crd: Obj) -> list[Obj]:
    """Custom resources of ``crd`` that someone made (deleting the CRD would delete them)."""
    spec = crd.get("spec") or {}
    versions = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    kind = (spec.get("names") or {}).get("kind")
    if not versions or not kind:
        return []
    api_version = f"{spec['group']}/{versions[0]}"
    if not cluster.serves(api_version, kind):
        return []
    return [o for o in cluster.list_objects(api_version, kind) if _made_by_others(o)]


def _drop_pull_secret(account: Obj) -> bool:
    secrets = account.get("imagePullSecrets") or []
    kept = [s for s in secrets if s.get("name") != SECRET_NAME]
    labels = account["metadata"].get("labels") or {}
    if kept == secrets and PULL_SECRET_LABEL not in labels:
        return False
    account["imagePullSecrets"] = kept
    account["metadata"]["labels"] = {k: v for k, v in labels.items() if k != PULL_SECRET_LABEL}
    return True


def _workload(cluster: Cluster, pod: Obj) -> str:
    """What to re-roll for ``pod``: its owner, a ReplicaSet's Deployment when it has one."""
    where = pod["metadata"].get("namespace")
    owners = pod["metadata"].get("ownerReferences") or []
    if not owners:
        return describe(pod)
    kind, name = owners[0]["kind"], owners[0]["name"]
    if kind == "ReplicaSet":
        replica_set = cluster.get("apps/v1", "ReplicaSet", name, where)
        above = ((replica_set or {}).get("metadata") or {}).get("ownerReferences") or []
        if above:
            kind, name = above[0]["kind"], above[0]["name"]
    return f"{kind} {where}/{name}"


def injected_workloads(cluster: Cluster) -> list[str]:
    """The workloads whose pods still run the mesh's sidecar, and need re-rolling."""
    return sorted(
        {
            _workload(cluster, pod)
            for pod in cluster.list_objects("v1", "Pod")
            if any(
                c.get("name") == SIDECAR_CONTAINER for s in pod_specs(pod) for c in containers(s)
            )
        }
    )


def clean_up(
    cluster: Cluster,
    namespace: str,
    *,
    keep_crds: bool = False,
    on_deleted: Callable[[str], None] = lambda _: None,
    claims: frozenset[str] = frozenset(),
) -> Removal:
    """Remove's steps after Helm's uninstall; see the module docstring."""
    removal = Removal()

    def deleted(obj: Obj) -> None:
        meta = obj["metadata"]
        if cluster.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")):
            removal.deleted.append(describe(obj))
            on_deleted(describe(obj))

    crd_version = "apiextensions.k8s.io/v1"
    crds = cluster.list_objects(crd_version, "CustomResourceDefinition", None, PART_OF_SELECTOR)
    for crd in crds:
        left = [] if keep_crds else custom_resources_left(cluster, crd)
        if keep_crds:
            removal.kept.append(f"{describe(crd)}: --keep-crds")
        elif left:
            removal.kept.append(
                f"{describe(crd)}: {len(left)} custom resource(s) made by others remain,"
                f" e.g. {describe(left[0])}"
            )
        else:
            deleted(crd)
    for secret in cluster.list_objects("v1", "Secret", label_selector=SECRET_SELECTOR):
        deleted(secret)
    legacy = cluster.get("v1", "ConfigMap", LEGACY_RECORD, namespace)
    if legacy is not None:
        deleted({"apiVersion": "v1", "kind": "ConfigMap", **legacy})
    for account in cluster.list_objects("v1", "ServiceAccount", label_selector=PULL_SECRET_LABEL):
        meta = account["metadata"]
        name, where = meta["name"], meta["namespace"]
        if cluster.update("v1", "ServiceAccount", name, where, _drop_pull_secret):
            removal.cleaned.append(f"ServiceAccount {where}/{name}")
    _remove_namespace(cluster, namespace, removal, deleted, claims)
    removal.injected = injected_workloads(cluster)
    return removal


def _remove_namespace(
    cluster: Cluster,
    namespace: str,
    removal: Removal,
    deleted: Callable[[Obj], None],
    claims: frozenset[str],
) -> None:
    found = cluster.get("v1", "Namespace", namespace)
    if found is None:
        return
    if found["metadata"].get("deletionTimestamp"):
        removal.kept.append(f"Namespace {namespace}: being deleted already")
        return
    created = created_by_us(found)
    left, unknown = objects_left(cluster, namespace, claims)
    if created and not left and not unknown:
        deleted({"apiVersion": "v1", "kind": "Namespace", **found})
        return
    reason = "deploy apply created it, but" if created else "deploy apply did not create it;"
    listed = ", ".join(describe(o) for o in left) or "nothing else"
    kept = f"Namespace {namespace}: {reason} {len(left)} other object(s) remain: {listed}"
    if unknown:
        kept += f"; it may not list {', '.join(unknown)}, so more may remain"
    removal.kept.append(kept)
