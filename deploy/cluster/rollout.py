"""Whether a workload has rolled out, judged from its status as ``kubectl rollout status`` does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

ROLLOUT_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff"})


@dataclass(frozen=True)
class RolloutState:
    """Whether a workload is rolled out, and a few words saying how far it is."""

    done: bool
    detail: str


def rollout_state(obj: Obj) -> RolloutState:
    """The rollout state of a Deployment, StatefulSet or DaemonSet."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return RolloutState(False, "waiting for the controller")
    kind = obj.get("kind")
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        updated = status.get("updatedNumberScheduled", 0)
        available = status.get("numberAvailable", 0)
        return RolloutState(
            updated >= desired and available >= desired, f"{available}/{desired} available"
        )
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if kind == "StatefulSet":
        ready = status.get("readyReplicas", 0)
        same_revision = status.get("currentRevision") == status.get("updateRevision")
        done = ready >= wanted and (same_revision or updated >= wanted)
        return RolloutState(done, f"{ready}/{wanted} ready")
    available = status.get("availableReplicas", 0)
    old_gone = status.get("replicas", 0) <= updated
    done = updated >= wanted and available >= wanted and old_gone
    return RolloutState(done, f"{available}/{wanted} available")


def condition_reason(obj: Obj, kind: str, status: str) -> str | None:
    """``reason: message`` of ``obj``'s condition ``kind`` when it has ``status``, or None."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == status:
            return f"{condition.get('reason')}: {condition.get('message', '')}".rstrip(": ")
    return None


def stalled_reason(obj: Obj) -> str | None:
    """Why a Deployment stopped progressing (``Progressing=False``), or None."""
    return condition_reason(obj, "Progressing", "False")


def pull_failure(pod: Obj) -> str | None:
    """Why a container of ``pod`` cannot start because its image cannot be pulled, or None."""
    status = pod.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_ERRORS:
            return (
                f"{waiting['reason']}: image {container.get('image')} could not be pulled:"
                f" {waiting.get('message', 'no message')}; is it mirrored? is the Secret in this"
                " namespace?"
            )
    return None


def custom_kinds(crd: Obj) -> set[tuple[str, str]]:
    """The (apiVersion, kind) pairs a CustomResourceDefinition serves."""
    spec = crd.get("spec") or {}
    kind = (spec.get("names") or {}).get("kind")
    return {
        (f"{spec.get('group')}/{version['name']}", str(kind))
        for version in spec.get("versions") or []
        if version.get("served", True)
    }


def crd_established(obj: Obj) -> bool:
    """Whether a CustomResourceDefinition's ``Established`` condition is True."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
