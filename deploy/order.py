"""The order objects are applied in (and removed in, reversed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]

WORKLOAD_KINDS = frozenset(
    {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob", "Pod"}
)
_RANKS: dict[str, int] = {
    "CustomResourceDefinition": 0,
    "Namespace": 1,
    "ServiceAccount": 2,
    "ClusterRole": 2,
    "Role": 2,
    "ClusterRoleBinding": 3,
    "RoleBinding": 3,
    "ConfigMap": 4,
    "Secret": 4,
    "Service": 5,
    **dict.fromkeys(WORKLOAD_KINDS, 7),
    "MutatingWebhookConfiguration": 8,
    "ValidatingWebhookConfiguration": 8,
}
_OTHER = 6  # anything else (custom resources, CSIDriver, PodDisruptionBudget): before workloads


def rank(obj: Obj) -> int:
    """Apply stage of ``obj``: CRDs, namespaces, RBAC, config, services, workloads, webhooks."""
    return _RANKS.get(str(obj.get("kind")), _OTHER)


def apply_order(objects: Iterable[Obj]) -> list[Obj]:
    """``objects`` sorted by :func:`rank`, keeping the given order within a stage."""
    return sorted(objects, key=rank)
