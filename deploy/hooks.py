"""Helm hooks: planned from the rendered objects (pure), then run at their phase on the cluster.

As ``helm install`` and ``helm uninstall`` do: an object annotated ``helm.sh/hook`` is never
applied with the others; the hooks of a phase run one by one in ``helm.sh/hook-weight`` order
(then kind, then name), a Job is waited for, and ``helm.sh/hook-delete-policy`` decides what is
deleted (``before-hook-creation`` when none is given).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from deploy.cluster import Cluster
from deploy.errors import HookFailed, ManifestError, WaitTimeout
from deploy.labels import SECRET_NAME
from deploy.manifests import describe, dump_documents, parse_documents
from deploy.order import rank
from deploy.record import RECORD_NAME, Record

Obj = dict[str, Any]

HOOK = "helm.sh/hook"
HOOK_WEIGHT = "helm.sh/hook-weight"
HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"
BEFORE_CREATION = "before-hook-creation"
SUCCEEDED = "hook-succeeded"
FAILED = "hook-failed"
PHASES = (
    "pre-install",
    "post-install",
    "pre-upgrade",
    "post-upgrade",
    "pre-delete",
    "post-delete",
    "pre-rollback",
    "post-rollback",
    "test",
)
DELETE_PHASES = ("pre-delete", "post-delete")
_POLL = 0.2


@dataclass(frozen=True)
class Hook:
    """One hook object, the phases it runs at, its weight and its delete policies."""

    obj: Obj
    phases: tuple[str, ...]
    weight: int
    policies: tuple[str, ...]

    def with_obj(self, obj: Obj) -> Hook:
        """The same hook for another (rewritten) object."""
        return replace(self, obj=obj)


def _annotations(obj: Obj) -> dict[str, Any]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def is_hook(obj: Obj) -> bool:
    """Whether ``obj`` carries the ``helm.sh/hook`` annotation."""
    return HOOK in _annotations(obj)


def _words(value: object) -> tuple[str, ...]:
    return tuple(w.strip() for w in str(value or "").split(",") if w.strip())


def parse_hook(obj: Obj) -> Hook:
    """The hook ``obj`` is; a ManifestError for an unknown phase or a weight that is no integer."""
    annotations = _annotations(obj)
    phases = _words(annotations.get(HOOK))
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ManifestError(f"{describe(obj)}: unknown {HOOK} phase {','.join(unknown)!r}")
    try:
        weight = int(str(annotations.get(HOOK_WEIGHT, "0")).strip() or "0")
    except ValueError:
        raise ManifestError(
            f"{describe(obj)}: {HOOK_WEIGHT} {annotations[HOOK_WEIGHT]!r} is not an integer"
        ) from None
    return Hook(
        obj, phases, weight, _words(annotations.get(HOOK_DELETE_POLICY)) or (BEFORE_CREATION,)
    )


def split_hooks(objects: Iterable[Obj]) -> tuple[list[Obj], list[Hook]]:
    """The objects apply sends, and the hooks, apart."""
    ordinary: list[Obj] = []
    hooks: list[Hook] = []
    for obj in objects:
        if is_hook(obj):
            hooks.append(parse_hook(obj))
        else:
            ordinary.append(obj)
    return ordinary, hooks


def for_phase(hooks: Iterable[Hook], phase: str) -> list[Hook]:
    """The hooks of ``phase`` in the order Helm runs them: weight, then kind, then name."""
    return sorted(
        (h for h in hooks if phase in h.phases),
        key=lambda h: (h.weight, rank(h.obj), str(h.obj["metadata"]["name"])),
    )


def first_phase(hook: Hook) -> str:
    """The first of ``hook``'s phases in Helm's order (how render groups it)."""
    return min(hook.phases, key=PHASES.index)


def dump_hooks(hooks: Iterable[Hook]) -> str:
    """The hooks as YAML (their annotations say the rest), for the deploy record."""
    return dump_documents(h.obj for h in hooks)


def load_hooks(text: str, source: str) -> list[Hook]:
    """Hooks written by :func:`dump_hooks`."""
    return [parse_hook(o) for o in parse_documents(text, source)] if text.strip() else []


def display_order(hooks: Iterable[Hook]) -> list[Hook]:
    """Hooks by phase (in Helm's order of phases), then as they run within it."""
    return sorted(
        hooks,
        key=lambda h: (
            PHASES.index(first_phase(h)),
            h.weight,
            rank(h.obj),
            h.obj["metadata"]["name"],
        ),
    )


def commented(hooks: Iterable[Hook]) -> str:
    """Hooks as YAML commented out, each headed by its phase: shown, never applied by a pipe."""
    parts: list[str] = []
    for hook in display_order(hooks):
        head = f"# hook {','.join(hook.phases)} (weight {hook.weight}): {describe(hook.obj)}\n"
        body = dump_documents([hook.obj]).removeprefix("---\n")
        parts.append(head + "".join(f"#   {line}\n" for line in body.splitlines()))
    return "".join(parts)


def before_hooks(objects: Iterable[Obj]) -> tuple[list[Obj], list[Obj]]:
    """``objects`` split: what pre-install hooks need (CRDs, namespace, pull Secret), the rest."""
    early: list[Obj] = []
    rest: list[Obj] = []
    for obj in objects:
        needed = obj["kind"] in ("CustomResourceDefinition", "Namespace") or (
            obj["kind"] == "Secret" and obj["metadata"]["name"] == SECRET_NAME
        )
        (early if needed else rest).append(obj)
    return early, rest


# --- running hooks on a cluster ---------------------------------------------------------------


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
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == SECRET_NAME:
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
