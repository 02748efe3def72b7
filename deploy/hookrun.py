"""Run the planned Helm hooks of a phase on the cluster, as ``helm install``/``uninstall`` do.

The hooks of a phase run one by one in their order (:func:`deploy.hooks.for_phase`), a Job is
waited for, and each hook's delete policies say what is deleted before and after.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from deploy.cluster import Cluster
from deploy.errors import HookFailed, WaitTimeout
from deploy.hooks import BEFORE_CREATION, FAILED, SUCCEEDED, Hook, for_phase, load_hooks
from deploy.labels import SECRET_NAME
from deploy.manifests import describe
from deploy.record import RECORD_NAME, Record
from deploy.secret import is_registry_secret

Obj = dict[str, Any]

_POLL = 0.2


def install_phase(cluster: Cluster, namespace: str) -> str:
    """``upgrade`` when meshlift's record is in ``namespace`` (a re-apply), else ``install``."""
    return "upgrade" if cluster.get("v1", "ConfigMap", RECORD_NAME, namespace) else "install"


def recorded_hooks(cluster: Cluster, namespace: str) -> list[Hook]:
    """The delete hooks recorded in ``namespace``, our Secret's data read back into its hook."""
    record = cluster.get("v1", "ConfigMap", RECORD_NAME, namespace)
    if record is None:
        return []
    hooks = load_hooks(Record.from_configmap(record).hooks, f"the deploy record in {namespace}")
    live = cluster.get("v1", "Secret", SECRET_NAME, namespace)
    filled: list[Hook] = []
    for hook in hooks:
        obj = hook.obj
        if is_registry_secret(obj):
            if live is None:
                continue
            obj = {**obj, "data": live.get("data") or {}}
        filled.append(hook.with_obj(obj))
    return filled


def _job_state(obj: Obj) -> str | None:
    """``Complete`` or ``Failed`` once a Job has finished, else None."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def _failure(obj: Obj) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed":
            return str(condition.get("message") or condition.get("reason") or "failed")
    return "failed"


def _delete(cluster: Cluster, obj: Obj, deadline: float) -> bool:
    """Delete ``obj`` and wait until it is gone; False if it did not exist."""
    meta = obj["metadata"]
    key = (obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if not cluster.delete(*key):
        return False
    while cluster.get(*key) is not None:
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out waiting for {describe(obj)} to be deleted")
        time.sleep(_POLL)
    return True


def run_hooks(
    cluster: Cluster,
    hooks: Iterable[Hook],
    phase: str,
    deadline: float,
    on_event: Callable[[str], None] = lambda _: None,
) -> None:
    """Run the hooks of ``phase``; a failed Job is a HookFailed naming it."""
    ordered = for_phase(hooks, phase)
    for hook in ordered:
        what = describe(hook.obj)
        if BEFORE_CREATION in hook.policies and _delete(cluster, hook.obj, deadline):
            on_event(f"{phase} hook: deleted the previous {what}")
        # A hook object is the release's own, made for this phase, as Helm makes it.
        cluster.apply(hook.obj, force=True)
        on_event(f"{phase} hook: created {what}")
        if hook.obj["kind"] != "Job":
            continue
        done = cluster.wait_for(hook.obj, lambda o: _job_state(o) is not None, deadline)
        if _job_state(done) == "Failed":
            if FAILED in hook.policies:
                _delete(cluster, hook.obj, deadline)
                on_event(f"{phase} hook: deleted {what} ({FAILED})")
            raise HookFailed(f"{phase} hook {what} failed: {_failure(done)}")
        on_event(f"{phase} hook: {what} succeeded")
    for hook in ordered:
        if SUCCEEDED in hook.policies and _delete(cluster, hook.obj, deadline):
            on_event(f"{phase} hook: deleted {describe(hook.obj)} ({SUCCEEDED})")
