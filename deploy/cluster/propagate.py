"""Copy the registry Secret into the namespaces of injected workloads, as the mesh does.

Each copy keeps the Secret's name, data and labels; the namespace's ``default`` service account
gets it as an image pull secret, marked with a label so ``remove`` can take it out again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from deploy.cluster.client import Cluster
from deploy.errors import ClusterError, DeployError
from deploy.labels import (
    INJECT_ENABLED,
    INJECT_LABEL,
    INJECT_SELECTOR,
    PULL_SECRET_LABEL,
    SECRET_LABELS,
    SECRET_NAME,
    SIDECAR_CONTAINER,
)
from deploy.postrender.rewrite import containers, pod_specs

Obj = dict[str, Any]

DEFAULT_SERVICE_ACCOUNT = "default"


@dataclass(frozen=True)
class Propagated:
    """What propagate did in one namespace."""

    namespace: str
    secret: str = ""  # created, configured, unchanged
    service_account: str = ""  # added, present
    error: str = ""  # why it failed there, if it did


def injected_namespaces(cluster: Cluster, mesh_namespace: str) -> list[str]:
    """Namespaces labelled for automatic injection, or running pods with the mesh sidecar."""
    found = {
        ns["metadata"]["name"]
        for ns in cluster.list_objects("v1", "Namespace", label_selector=INJECT_SELECTOR)
    }
    for pod in cluster.list_objects("v1", "Pod"):
        if any(c.get("name") == SIDECAR_CONTAINER for s in pod_specs(pod) for c in containers(s)):
            found.add(pod["metadata"]["namespace"])
    found.discard(mesh_namespace)
    return sorted(found)


def source_secret(cluster: Cluster, mesh_namespace: str) -> Obj:
    """The mesh's registry Secret; a DeployError if apply has not created it."""
    secret = cluster.get("v1", "Secret", SECRET_NAME, mesh_namespace)
    if secret is None:
        raise DeployError(
            f"no Secret {SECRET_NAME} in {mesh_namespace}: run `deploy apply` with registry"
            " credentials first"
        )
    return secret


def _copy_of(secret: Obj, namespace: str) -> Obj:
    meta = secret["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": meta["name"],
            "namespace": namespace,
            "labels": {k: v for k, v in (meta.get("labels") or {}).items() if k in SECRET_LABELS},
        },
        "type": secret.get("type"),
        "data": secret.get("data", {}),
    }


def _apply_copy(cluster: Cluster, copy: Obj) -> str:
    """Server-side apply a copy of the Secret (ours, so forced): created, configured, unchanged."""
    meta = copy["metadata"]
    before = cluster.get("v1", "Secret", meta["name"], meta["namespace"])
    after = cluster.apply(copy, force=True)
    if before is None:
        return "created"
    same = before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion")
    return "unchanged" if same else "configured"


def _add_pull_secret(account: Obj) -> bool:
    secrets = account.get("imagePullSecrets") or []
    if any(s.get("name") == SECRET_NAME for s in secrets):
        return False
    account["imagePullSecrets"] = [*secrets, {"name": SECRET_NAME}]
    labels = account["metadata"].get("labels") or {}
    account["metadata"]["labels"] = {**labels, PULL_SECRET_LABEL: SECRET_NAME}
    return True


def _add_to_default_account(cluster: Cluster, namespace: str) -> str:
    # Made as the service account controller would, where it has not made it yet.
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": DEFAULT_SERVICE_ACCOUNT,
            "namespace": namespace,
            "labels": {PULL_SECRET_LABEL: SECRET_NAME},
        },
        "imagePullSecrets": [{"name": SECRET_NAME}],
    }
    return "added" if cluster.create_or_update(account, _add_pull_secret) else "present"


def propagate_to(cluster: Cluster, secret: Obj, namespace: str) -> Propagated:
    """Copy ``secret`` into ``namespace`` and add it to the default service account there.

    A failure in this one namespace is returned, not raised, so the others still get theirs.
    """
    try:
        if cluster.get("v1", "Namespace", namespace) is None:
            return Propagated(namespace, error="no such namespace")
        action = _apply_copy(cluster, _copy_of(secret, namespace))
        return Propagated(namespace, action, _add_to_default_account(cluster, namespace))
    except ClusterError as exc:
        return Propagated(namespace, error=str(exc))


def propagate(
    cluster: Cluster, mesh_namespace: str, namespaces: Iterable[str], all_injected: bool
) -> list[Propagated]:
    """Propagate into ``namespaces`` and, with ``all_injected``, every injected namespace."""
    secret = source_secret(cluster, mesh_namespace)
    targets = set(namespaces) - {mesh_namespace}
    if all_injected:
        targets.update(injected_namespaces(cluster, mesh_namespace))
    return [propagate_to(cluster, secret, ns) for ns in sorted(targets)]


def _wanted(namespace: Obj, explicit: set[str], all_injected: bool) -> bool:
    labels = namespace["metadata"].get("labels") or {}
    if namespace["metadata"]["name"] in explicit:
        return True
    return all_injected and labels.get(INJECT_LABEL) == INJECT_ENABLED


def watch_and_propagate(
    cluster: Cluster,
    mesh_namespace: str,
    namespaces: Iterable[str],
    all_injected: bool,
    on_result: Callable[[Propagated], None],
    stop: threading.Event,
    resync: float = 30.0,
) -> None:
    """Propagate now, then again whenever a wanted namespace appears or is labelled.

    A full pass every ``resync`` seconds also catches pods with sidecars in unlabelled
    namespaces. Runs until ``stop`` is set (or the process is interrupted).
    """
    explicit = set(namespaces) - {mesh_namespace}
    while not stop.is_set():
        _, since = cluster.list_with_version("v1", "Namespace")
        for result in propagate(cluster, mesh_namespace, explicit, all_injected):
            on_result(result)
        secret = source_secret(cluster, mesh_namespace)
        try:
            for event, namespace in cluster.watch(
                "v1", "Namespace", resource_version=since, timeout=resync
            ):
                name = namespace["metadata"]["name"]
                wanted = _wanted(namespace, explicit, all_injected) and name != mesh_namespace
                if event in ("ADDED", "MODIFIED") and wanted:
                    on_result(propagate_to(cluster, secret, name))
                if stop.is_set():
                    break
        except ClusterError as exc:
            if exc.status != 410:  # 410 Gone: our resourceVersion is too old; list again
                raise
