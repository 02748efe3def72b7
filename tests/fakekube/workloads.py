"""What the workload controllers and the kubelet do, over a Store.

Status (observed at once, or ``store.rollout_delay`` seconds after a spec change), a
Deployment's ReplicaSets (one per pod template, named by its ``pod-template-hash``), their
Pods, the failing Pod of an image that cannot be pulled, and the garbage collection of both.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from typing import TYPE_CHECKING

from tests.fakekube.patch import Obj

if TYPE_CHECKING:
    from tests.fakekube.store import Store

KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
REVISION = "deployment.kubernetes.io/revision"
CONTROLLER = "kube-controller-manager"
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def react(store: Store, kind: str, old: Obj | None, obj: Obj) -> None:
    """Before a workload is stored: its status, or the last one seen while a change is pending.

    A change to the spec is observed ``store.rollout_delay`` seconds later (``reconcile``
    schedules it); a Deployment's ReplicaSets are observed with it.
    """
    meta = obj["metadata"]
    changed = old is None or old["metadata"].get("generation") != meta.get("generation")
    own_replica_set = kind == "ReplicaSet" and meta.get("ownerReferences")
    if changed and store.rollout_delay > 0 and not own_replica_set:
        obj["status"] = copy.deepcopy((old or {}).get("status") or {})
    else:
        set_status(store, kind, obj, store.workloads_ready)


def reconcile(store: Store, kind: str, obj: Obj) -> None:
    """After a workload is stored: observe a pending change later, else act on the spec."""
    meta = obj["metadata"]
    if (obj.get("status") or {}).get("observedGeneration") != meta.get("generation"):
        key = (kind, meta.get("namespace", ""), meta["name"], meta.get("generation"))
        store.later(store.rollout_delay, _observe, store, *key)
    elif kind == "Deployment":
        _replica_sets(store, obj)
    elif kind == "ReplicaSet":
        _pods(store, obj)
    else:
        _failing_pod(store, obj)


def _observe(store: Store, kind: str, namespace: str, name: str, generation: int) -> None:
    obj = store.stored(kind, namespace, name)
    if obj is None or obj["metadata"].get("generation") != generation:
        return  # gone, or a newer change is pending with its own timer
    store.modify(obj, lambda o: set_status(store, kind, o, store.workloads_ready))
    reconcile(store, kind, obj)


def set_status(store: Store, kind: str, obj: Obj, ready: bool) -> None:
    """The status a controller reports for ``obj`` (every replica ready, or none)."""
    name = obj["metadata"]["name"]
    failing = pull_failure(store, obj) is not None or name in store.stalled
    obj["status"] = _status(kind, obj, ready and not failing)
    if kind == "Deployment" and name in store.stalled:
        obj["status"]["conditions"] = [
            obj["status"]["conditions"][0],
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{name}-5d4f8c" has timed out progressing.',
            },
        ]


def pull_failure(store: Store, workload: Obj) -> tuple[Obj, str] | None:
    """The first container of ``workload``'s pods whose image cannot be pulled, and why."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if container.get("image") in store.pull_errors:
            return container, store.pull_errors[container["image"]]
    return None


def template_hash(template: Obj) -> str:
    """A pod template's ``pod-template-hash``: ten characters, as the deployment controller's."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def collect(store: Store, owner: Obj) -> None:
    """Garbage collection: delete the ReplicaSets and Pods ``owner`` owns, and theirs."""
    meta = owner["metadata"]
    for kind in ("ReplicaSet", "Pod"):
        for obj in store.owned_by(kind, meta.get("namespace", ""), meta["uid"]):
            collect(store, obj)
            store.remove(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])


def _owner(obj: Obj) -> Obj:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _replica_sets(store: Store, deployment: Obj) -> None:
    """The deployment controller: a ReplicaSet for the current template; the old ones scaled
    to 0 once it is available (until then their pods, failing or not, stay)."""
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    template = spec.get("template") or {}
    pod_hash = template_hash(template)
    name, replicas = f"{meta['name']}-{pod_hash}", spec.get("replicas", 1)
    owned = store.owned_by("ReplicaSet", meta["namespace"], meta["uid"])
    current = next((rs for rs in owned if rs["metadata"]["name"] == name), None)
    if current is None:
        labels = {**((template.get("metadata") or {}).get("labels") or {})}
        labels["pod-template-hash"] = pod_hash
        selector = {**((spec.get("selector") or {}).get("matchLabels") or {})}
        selector["pod-template-hash"] = pod_hash
        revision = 1 + max(
            (int(rs["metadata"]["annotations"][REVISION]) for rs in owned), default=0
        )
        replica_set = {
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [_owner(deployment)],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    **template,
                    "metadata": {**template.get("metadata", {}), "labels": labels},
                },
            },
        }
        store.make("ReplicaSet", meta["namespace"], replica_set, CONTROLLER)
    elif current["spec"].get("replicas") != replicas:
        _scale(store, current, replicas)
    if pull_failure(store, deployment) is None and store.workloads_ready:
        for old in owned:
            if old["metadata"]["name"] != name and old["spec"].get("replicas") != 0:
                _scale(store, old, 0)


def _scale(store: Store, replica_set: Obj, replicas: int) -> None:
    changed = copy.deepcopy(replica_set)
    changed["spec"]["replicas"] = replicas
    meta = changed["metadata"]
    store.replace("ReplicaSet", meta["namespace"], meta["name"], changed, CONTROLLER)


def _pods(store: Store, replica_set: Obj) -> None:
    """The ReplicaSet controller and the kubelet: ``spec.replicas`` pods, running or failing."""
    meta, spec = replica_set["metadata"], replica_set.get("spec") or {}
    pods = [
        pod
        for pod in store.owned_by("Pod", meta["namespace"], meta["uid"])
        if not pod["metadata"].get("deletionTimestamp")
    ]
    wanted = spec.get("replicas", 1)
    for pod in pods[wanted:]:
        store.terminate_pod(pod)
    for _ in range(wanted - len(pods)):
        store.make("Pod", meta["namespace"], _pod(store, replica_set), CONTROLLER)


def set_pod_ready(status: Obj, ready: bool) -> None:
    """A running pod's readiness (its containers' and its Ready condition); others stay."""
    if status.get("phase") != "Running":
        return
    for container in status.get("containerStatuses") or []:
        container.update(ready=ready, started=True)
    status["conditions"] = [{"type": "Ready", "status": str(ready)}]


def _failing_pod(store: Store, workload: Obj) -> None:
    """A StatefulSet's or DaemonSet's pod whose image cannot be pulled (once)."""
    meta = workload["metadata"]
    if pull_failure(store, workload) is None or store.owned_by(
        "Pod", meta["namespace"], meta["uid"]
    ):
        return
    store.make("Pod", meta["namespace"], _pod(store, workload), "kubelet")


def _pod(store: Store, owner: Obj) -> Obj:
    """A pod of ``owner``'s template: running and ready, or waiting for an image it cannot pull."""
    template = (owner.get("spec") or {}).get("template") or {}
    spec = template.get("spec") or {}
    failure = pull_failure(store, owner)
    status: Obj
    if failure is None:
        status = {
            "phase": "Running",
            "containerStatuses": [
                {"name": c.get("name"), "image": c.get("image"), "state": {"running": {}}}
                for c in spec.get("containers") or []
            ],
        }
        set_pod_ready(status, store.workloads_ready)
    else:
        container, message = failure
        waiting = {"reason": store.pull_reason, "message": message}
        status = {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "ready": False,
                    "state": {"waiting": waiting},
                }
            ],
        }
    return {
        "metadata": {
            "name": f"{owner['metadata']['name']}-{uuid.uuid4().hex[:5]}",
            "labels": (template.get("metadata") or {}).get("labels") or {},
            "ownerReferences": [_owner(owner)],
        },
        "spec": spec,
        "status": status,
    }


def _status(kind: str, obj: Obj, ready: bool) -> Obj:
    generation = obj["metadata"].get("generation", 1)
    if kind == "DaemonSet":
        n = int(ready)
        return {
            "observedGeneration": generation,
            "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1,
            "updatedNumberScheduled": 1,
            "numberReady": n,
            "numberAvailable": n,
            "numberUnavailable": 1 - n,
            "numberMisscheduled": 0,
        }
    replicas = obj.get("spec", {}).get("replicas", 1)
    n = replicas if ready else 0
    status: Obj = {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": n,
        "availableReplicas": n,
    }
    if kind == "StatefulSet":
        status.update(currentReplicas=replicas, currentRevision="r1", updateRevision="r1")
    if kind == "Deployment":
        status["conditions"] = _deployment_conditions(obj, ready)
    return status


def _deployment_conditions(obj: Obj, ready: bool) -> list[Obj]:
    """Available and Progressing, in the deployment controller's words."""
    template = (obj.get("spec") or {}).get("template") or {}
    name = f'ReplicaSet "{obj["metadata"]["name"]}-{template_hash(template)}"'
    if ready:
        return [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": f"{name} has successfully progressed.",
            },
        ]
    return [
        {
            "type": "Available",
            "status": "False",
            "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability.",
        },
        {
            "type": "Progressing",
            "status": "True",
            "reason": "ReplicaSetUpdated",
            "message": f"{name} is progressing.",
        },
    ]
