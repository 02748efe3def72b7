"""Helm hooks planned from the rendered objects (pure); :mod:`deploy.hookrun` runs them.

As ``helm install`` and ``helm uninstall`` do: an object annotated ``helm.sh/hook`` is never
applied with the others; the hooks of a phase run in ``helm.sh/hook-weight`` order (then kind,
then name), and ``helm.sh/hook-delete-policy`` says what is deleted (``before-hook-creation``
when none is given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from deploy.errors import ManifestError
from deploy.manifests import describe, dump_documents, parse_documents
from deploy.order import rank
from deploy.secret import is_registry_secret

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
        needed = obj["kind"] in ("CustomResourceDefinition", "Namespace") or is_registry_secret(obj)
        (early if needed else rest).append(obj)
    return early, rest
