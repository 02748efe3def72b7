"""Send a plan to the cluster: server-side apply in order, wait for CRDs and rollouts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.cluster import Cluster
from deploy.errors import ClusterError
from deploy.hooks import before_hooks, install_phase, run_hooks
from deploy.plan import Plan
from deploy.rollout import ROLLOUT_KINDS, RolloutState, crd_established, rollout_state

Obj = dict[str, Any]

# Set on a namespace apply created, so remove may delete it (and only such a namespace).
CREATED_ANNOTATION = "meshlift/created-by"
CREATED_BY = "deploy-apply"


@dataclass(frozen=True)
class Applied:
    """One object sent, and what it did: created, configured, replaced or unchanged."""

    obj: Obj
    action: str


def _create_namespace(cluster: Cluster, obj: Obj) -> None:
    meta = obj["metadata"]
    annotations = {**(meta.get("annotations") or {}), CREATED_ANNOTATION: CREATED_BY}
    cluster.create({**obj, "metadata": {**meta, "annotations": annotations}})


def apply_object(cluster: Cluster, obj: Obj) -> Applied:
    """Server-side apply one object; a Namespace that did not exist is marked as ours."""
    meta = obj["metadata"]
    before = cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if before is None and obj["kind"] == "Namespace":
        _create_namespace(cluster, obj)
    try:
        after = cluster.apply(obj)
    except ClusterError as exc:
        if exc.status != 422 or obj["kind"] != "Job" or before is None:
            raise
        # A Job's pod template cannot change (a new registry or image tag): replace the Job.
        cluster.delete(obj["apiVersion"], "Job", meta["name"], meta.get("namespace"))
        cluster.apply(obj)
        return Applied(obj, "replaced")
    if before is None:
        return Applied(obj, "created")
    same = before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion")
    return Applied(obj, "unchanged" if same else "configured")


def apply_plan(
    cluster: Cluster,
    plan: Plan,
    *,
    wait: bool,
    timeout: float,
    on_applied: Callable[[Applied], None] = lambda _: None,
    on_rollout: Callable[[Obj, RolloutState], None] = lambda *_: None,
    on_hook: Callable[[str], None] = lambda _: None,
) -> list[Applied]:
    """Apply every object of ``plan`` in order; CRDs are waited for before anything else.

    The ``pre-install`` hooks (``pre-upgrade`` when the mesh is there) run once the CRDs, the
    namespace and the Secret are in, the ``post-`` ones at the end. With ``wait``, also wait
    until every Deployment, StatefulSet and DaemonSet has rolled out. One ``timeout`` (seconds)
    covers all the waiting.
    """
    deadline = time.monotonic() + timeout
    phase = install_phase(cluster, plan.settings.namespace)
    done: list[Applied] = []

    def send(obj: Obj) -> None:
        applied = apply_object(cluster, obj)
        done.append(applied)
        on_applied(applied)
        if obj["kind"] == "CustomResourceDefinition":
            cluster.wait_for(obj, crd_established, deadline)

    early, rest = before_hooks(plan.objects)
    for obj in early:
        send(obj)
    run_hooks(cluster, plan.hooks, f"pre-{phase}", deadline, on_hook)
    for obj in rest:
        send(obj)
    if wait:
        for obj in plan.objects:
            if obj["kind"] in ROLLOUT_KINDS:
                cluster.wait_for(
                    obj,
                    lambda o: rollout_state(o).done,
                    deadline,
                    on_change=lambda o: on_rollout(o, rollout_state(o)),
                )
    run_hooks(cluster, plan.hooks, f"post-{phase}", deadline, on_hook)
    return done
