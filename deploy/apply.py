"""Send a plan to the cluster: server-side apply in order, wait for CRDs and rollouts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.cluster import Cluster
from deploy.errors import ClusterError, RolloutFailed
from deploy.hookrun import install_phase, run_hooks
from deploy.hooks import before_hooks
from deploy.labels import CREATED_ANNOTATION, CREATED_BY, created_by_us
from deploy.manifests import describe
from deploy.plan import Plan
from deploy.record import kinds_of
from deploy.rollout import (
    ROLLOUT_KINDS,
    RolloutState,
    crd_established,
    custom_kinds,
    pod_selector,
    pull_failure,
    rollout_state,
    stalled_reason,
)

Obj = dict[str, Any]

# Seconds between looks at a waiting workload's pods (their failures do not change it).
ROLLOUT_POLL = 5.0


@dataclass(frozen=True)
class Applied:
    """One object sent, and what it did: created, configured, replaced or unchanged."""

    obj: Obj
    action: str


def _marked(obj: Obj) -> Obj:
    meta = obj["metadata"]
    annotations = {**(meta.get("annotations") or {}), CREATED_ANNOTATION: CREATED_BY}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def apply_object(cluster: Cluster, obj: Obj) -> Applied:
    """Server-side apply one object; one we create is marked as ours.

    Conflicts with other field managers are forced only on objects we created; on any other
    object they are a ClusterError naming the manager and the field.
    """
    meta = obj["metadata"]
    before = cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    ours = before is None or created_by_us(before)
    sent = _marked(obj) if ours else obj
    try:
        after = cluster.apply(sent, force=ours)
    except ClusterError as exc:
        if exc.status == 409 and not ours:
            conflict = str(exc).removesuffix(" (HTTP 409)")
            raise ClusterError(
                f"{conflict}; meshlift did not create this object, so it does not take fields"
                " others own (HTTP 409)",
                409,
            ) from None
        if exc.status != 422 or obj["kind"] != "Job" or before is None:
            raise
        # A Job's pod template cannot change (a new registry or image tag): replace the Job.
        cluster.delete(obj["apiVersion"], "Job", meta["name"], meta.get("namespace"))
        cluster.apply(sent, force=True)
        return Applied(obj, "replaced")
    if before is None:
        return Applied(obj, "created")
    same = before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion")
    return Applied(obj, "unchanged" if same else "configured")


def _wait_out_termination(
    cluster: Cluster, namespace: Obj, deadline: float, on_note: Callable[[str], None]
) -> None:
    found = cluster.get("v1", "Namespace", namespace["metadata"]["name"])
    if found is not None and found["metadata"].get("deletionTimestamp"):
        on_note(f"waiting for Namespace {found['metadata']['name']} to finish terminating")
        cluster.wait_deleted(found, deadline)


def apply_plan(
    cluster: Cluster,
    plan: Plan,
    *,
    wait: bool,
    timeout: float,
    on_applied: Callable[[Applied], None] = lambda _: None,
    on_rollout: Callable[[Obj, RolloutState], None] = lambda *_: None,
    on_note: Callable[[str], None] = lambda _: None,
    on_hook: Callable[[str], None] = lambda _: None,
) -> list[Applied]:
    """Apply every object of ``plan`` in order; CRDs are waited for before anything else.

    A namespace still terminating (from a remove just before) is waited out first, so apply
    creates it anew. The ``pre-install`` hooks (``pre-upgrade`` when the mesh is there) run once
    the CRDs, the namespace and the Secret are in, the ``post-`` ones at the end. With ``wait``,
    also wait until every Deployment, StatefulSet and DaemonSet has rolled out. One ``timeout``
    (seconds) covers all the waiting.
    """
    deadline = time.monotonic() + timeout
    phase = install_phase(cluster, plan.settings.namespace)
    done: list[Applied] = []

    def send(obj: Obj) -> None:
        if obj["kind"] == "Namespace":
            _wait_out_termination(cluster, obj, deadline, on_note)
        applied = apply_object(cluster, obj)
        done.append(applied)
        on_applied(applied)
        if obj["kind"] == "CustomResourceDefinition":
            cluster.wait_for(obj, crd_established, deadline)
            for api_version, kind in custom_kinds(obj) & served:
                cluster.wait_served(api_version, kind, deadline)

    served = set(kinds_of(plan.objects)) | set(kinds_of(hook.obj for hook in plan.hooks))
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
                    lambda o: _rolled_out(cluster, o),
                    deadline,
                    on_change=lambda o: on_rollout(o, rollout_state(o)),
                    poll=ROLLOUT_POLL,
                )
    run_hooks(cluster, plan.hooks, f"post-{phase}", deadline, on_hook)
    return done


def _rolled_out(cluster: Cluster, obj: Obj) -> bool:
    """Whether ``obj`` rolled out; RolloutFailed when it will not without help."""
    if rollout_state(obj).done:
        return True
    failed = f"{describe(obj)} did not roll out"
    selector = pod_selector(obj)
    namespace = obj["metadata"].get("namespace")
    for pod in cluster.list_objects("v1", "Pod", namespace, selector) if selector else []:
        failure = pull_failure(pod)
        if failure is not None:
            raise RolloutFailed(f"{failed}: {describe(pod)}: {failure}")
    stalled = stalled_reason(obj)
    if stalled is not None:
        raise RolloutFailed(f"{failed}: {stalled}")
    return False
