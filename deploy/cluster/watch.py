"""Watch a release's workloads while Helm works: progress for the display, and failures early.

Helm's wait only says "not ready" when its timeout runs out. A rollout that will not finish
without help is known much sooner, and this names it: an image pull that keeps failing past a
short grace, ``ProgressDeadlineExceeded`` once ``observedGeneration`` has caught up, or a
ReplicaSet reporting ``FailedCreate``. Only the pods of the current revision count: a failing
pod of the previous ReplicaSet says nothing about the new one.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from deploy.chart.manifests import describe
from deploy.cluster.client import Cluster
from deploy.cluster.rollout import (
    ROLLOUT_KINDS,
    RolloutState,
    condition_reason,
    pull_failure,
    rollout_state,
    stalled_reason,
)
from deploy.errors import ClusterError

Obj = dict[str, Any]

POLL = 1.0
# How long an image pull may keep failing before the rollout counts as failed.
PULL_GRACE = 15.0
HASH_LABEL = "pod-template-hash"
HOOK_ANNOTATION = "helm.sh/hook"


def _owned_by(obj: Obj, owner: Obj) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


def _template(obj: Obj) -> Obj:
    """A pod template without the ``pod-template-hash`` label the controller adds."""
    template = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return template


def _current_replicaset(deployment: Obj, replicasets: Iterable[Obj]) -> Obj | None:
    """The ReplicaSet of the Deployment's current template, found as the deployment controller
    finds it: the one whose pod template equals the Deployment's but for the hash label."""
    wanted = _template(deployment)
    for rs in replicasets:
        if _owned_by(rs, deployment) and _template(rs) == wanted:
            return rs
    return None


def _stalled(obj: Obj) -> str | None:
    """``Progressing=False`` counts only once the controller has seen the current spec."""
    generation = obj["metadata"].get("generation", 0)
    if (obj.get("status") or {}).get("observedGeneration", 0) < generation:
        return None
    return stalled_reason(obj)


@dataclass
class Snapshot:
    """One look at the namespace: workloads, their current pods and ReplicaSets, hook Jobs."""

    workloads: list[Obj]
    pods: list[Obj]
    replicasets: list[Obj]
    jobs: list[Obj]

    def current_pods(self, workload: Obj) -> tuple[list[Obj], Obj | None]:
        """The pods of ``workload``'s current revision, and its current ReplicaSet if any."""
        if workload["kind"] == "Deployment":
            rs = _current_replicaset(workload, self.replicasets)
            owner = rs if rs is not None else workload
            return [p for p in self.pods if _owned_by(p, owner)], rs
        return [p for p in self.pods if _owned_by(p, workload)], None


@dataclass
class RolloutWatch:
    """Polls the namespace until stopped; ``failure`` is set once a rollout cannot finish."""

    cluster: Cluster
    namespace: str
    names: frozenset[tuple[str, str]]
    on_rollout: Callable[[Obj, RolloutState], None] = lambda *_: None
    on_hook: Callable[[str], None] = lambda _: None
    on_failure: Callable[[str], None] = lambda _: None
    poll: float = POLL
    grace: float = PULL_GRACE
    failure: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _pulls: dict[str, float] = field(default_factory=dict)
    _hooks: dict[str, str] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def _look(self) -> Snapshot:
        cluster, ns = self.cluster, self.namespace
        workloads = [
            o
            for kind in sorted(ROLLOUT_KINDS)
            for o in cluster.list_objects("apps/v1", kind, ns)
            if (kind, o["metadata"]["name"]) in self.names
        ]
        return Snapshot(
            workloads,
            cluster.list_objects("v1", "Pod", ns),
            cluster.list_objects("apps/v1", "ReplicaSet", ns),
            cluster.list_objects("batch/v1", "Job", ns),
        )

    def _judge(self, workload: Obj, snap: Snapshot, now: float) -> str | None:
        pods, rs = snap.current_pods(workload)
        if rs is not None and (reason := condition_reason(rs, "ReplicaFailure", "True")):
            return reason
        if (reason := _stalled(workload)) is not None:
            return reason
        for pod in pods:
            failure = pull_failure(pod)
            key = describe(pod)
            if failure is None:
                self._pulls.pop(key, None)
                continue
            first = self._pulls.setdefault(key, now)
            if now - first >= self.grace:
                return f"{key}: {failure}"
        return None

    def _hook_states(self, jobs: list[Obj]) -> None:
        for job in jobs:
            if HOOK_ANNOTATION not in (job["metadata"].get("annotations") or {}):
                continue
            status = job.get("status") or {}
            state = (
                "succeeded"
                if status.get("succeeded")
                else "failed"
                if status.get("failed")
                else "running"
            )
            name = job["metadata"]["name"]
            if self._hooks.get(name) != state:
                self._hooks[name] = state
                self.on_hook(f"hook Job {self.namespace}/{name}: {state}")

    def check(self) -> str | None:
        """One look: report progress; the first failure found, if any."""
        snap = self._look()
        self._hook_states(snap.jobs)
        now = time.monotonic()
        for workload in snap.workloads:
            self.on_rollout(workload, rollout_state(workload))
            reason = self._judge(workload, snap, now)
            if reason is not None:
                return f"{describe(workload)} did not roll out: {reason}"
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                reason = self.check()
            except ClusterError:
                continue  # a failed look is not a failed rollout: Helm's wait still decides
            if reason is not None:
                self.failure = reason
                self.on_failure(reason)
                return

    def __enter__(self) -> RolloutWatch:
        self._thread = threading.Thread(target=self._loop, name="rollout-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is None:  # one last look, so the display ends on what Helm finished with
            with contextlib.suppress(ClusterError):
                self.check()
