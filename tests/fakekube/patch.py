"""Patch semantics: server-side apply with field ownership, updates' ownership, merge patch.

Field ownership is kept as a real API server keeps it, in ``metadata.managedFields`` (FieldsV1):
one entry per (manager, operation), each a set of paths. A path element is ``f:<key>`` for a
mapping key or ``k:{"<merge key>":<value>}`` for an item of a list merged by key (``LIST_KEYS``);
any other list is atomic (one value). Every node on the way to a leaf is in the set, so a
manager that owns ``.data.a`` also owns ``.data``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

Obj = dict[str, Any]
Path = tuple[str, ...]
Owners = dict[tuple[str, str], set[Path]]

# Lists merged item by item, by the first key every item has (as the API's schemas say).
LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "secrets": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
}
# Kept by the server, owned by nobody.
_SERVER_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "managedFields",
    }
)
_MISSING = object()


class FieldConflicts(Exception):
    """An apply would change fields another manager owns: (manager, field path) pairs."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        super().__init__(conflicts)
        self.conflicts = conflicts


def _list_key(field: str, value: Any) -> str | None:
    if not isinstance(value, list):
        return None
    for key in LIST_KEYS.get(field, ()):
        if all(isinstance(item, dict) and key in item for item in value):
            return key
    return None


def _item(key: str, item: Obj) -> str:
    return "k:" + json.dumps({key: item[key]}, separators=(",", ":"))


def _walk(field: str, value: Any, path: Path) -> Iterator[Path]:
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _walk(key, inner, (*path, f"f:{key}"))
        return
    key = _list_key(field, value)
    if key is not None:
        for item in value:
            yield from _walk("", item, (*path, _item(key, item)))


def field_paths(obj: Obj | None) -> set[Path]:
    """Every path a manager can own in ``obj`` (server-kept metadata and status left out)."""
    paths: set[Path] = set()
    for key, value in (obj or {}).items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _SERVER_METADATA}
            if not value:
                continue
        paths.update(_walk(key, value, (f"f:{key}",)))
    return paths


def _children(node: Any, field: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        yield from ((f"f:{k}", v) for k, v in node.items())
        return
    key = _list_key(field, node)
    if key is not None:
        yield from ((_item(key, item), item) for item in node)


def value_at(obj: Any, path: Path) -> Any:
    """The value at ``path`` in ``obj``, or a sentinel when absent."""
    node, field = obj, ""
    for element in path:
        node = dict(_children(node, field)).get(element, _MISSING)
        if node is _MISSING:
            return _MISSING
        field = element[2:] if element.startswith("f:") else ""
    return node


def _is_leaf(obj: Obj, path: Path) -> bool:
    value = value_at(obj, path)
    return not isinstance(value, dict) and _list_key(path[-1][2:], value) is None


def _delete_at(obj: Obj, path: Path) -> None:
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    element = path[-1]
    if isinstance(parent, dict) and element.startswith("f:"):
        parent.pop(element[2:], None)
    elif isinstance(parent, list):
        key = _list_key(path[-2][2:], parent)
        parent[:] = [i for i in parent if key is None or _item(key, i) != element]


def _merge(field: str, live: Any, applied: Any) -> Any:
    if isinstance(live, dict) and isinstance(applied, dict):
        merged = dict(live)
        for key, value in applied.items():
            merged[key] = _merge(key, live.get(key), value)
        return merged
    key, live_key = _list_key(field, applied), _list_key(field, live)
    if key is not None and key == live_key:
        wanted = {_item(key, i): i for i in applied}
        result = [
            _merge("", i, wanted.pop(_item(key, i))) if _item(key, i) in wanted else i for i in live
        ]
        return result + [copy.deepcopy(i) for i in wanted.values()]
    return copy.deepcopy(applied)


def path_text(path: Path) -> str:
    """A field path as the API prints it: ``.spec.containers[name="app"].image``."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += f".{element[2:]}"
        else:
            ((key, value),) = json.loads(element[2:]).items()
            text += f"[{key}={json.dumps(value)}]"
    return text


# --- managedFields --------------------------------------------------------------------------


def owners_of(obj: Obj | None) -> Owners:
    """The ``managedFields`` of ``obj`` as path sets by (manager, operation)."""
    owners: Owners = {}

    def flatten(tree: Obj, path: Path, into: set[Path]) -> None:
        for element, inner in tree.items():
            if element != ".":
                into.add((*path, element))
                flatten(inner, (*path, element), into)

    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        paths: set[Path] = set()
        flatten(entry.get("fieldsV1") or {}, (), paths)
        owners[(entry["manager"], entry["operation"])] = paths
    return owners


def _set_owners(obj: Obj, owners: Owners, api_version: str) -> None:
    present = field_paths(obj)
    entries = []
    for (manager, operation), paths in owners.items():
        kept = paths & present
        if not kept:
            continue
        tree: Obj = {}
        for path in sorted(kept):
            node = tree
            for element in path:
                node = node.setdefault(element, {})
                if element.startswith("k:"):
                    node.setdefault(".", {})
        entries.append(
            {
                "manager": manager,
                "operation": operation,
                "apiVersion": api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": tree,
            }
        )
    obj.setdefault("metadata", {})["managedFields"] = entries


def server_side_apply(live: Obj | None, applied: Obj, manager: str, force: bool) -> Obj:
    """``applied`` merged into ``live`` as ``manager``'s apply; FieldConflicts unless ``force``.

    Fields this manager applied before and omits now are removed, unless another manager
    owns them too. Lists of ``LIST_KEYS`` merge by key; other lists are replaced.
    """
    applied = copy.deepcopy(applied)
    applied.get("metadata", {}).pop("managedFields", None)
    owners = owners_of(live)
    base: Obj = copy.deepcopy(live) if live else {}
    wanted = field_paths(applied)
    me = (manager, "Apply")
    conflicts = [
        (who, path)
        for who, paths in owners.items()
        if who != me
        for path in sorted(wanted & paths)
        if _is_leaf(applied, path) and value_at(base, path) != value_at(applied, path)
    ]
    if conflicts and not force:
        raise FieldConflicts([(who[0], path_text(path)) for who, path in conflicts])
    for who, path in conflicts:
        owners[who].discard(path)
    merged: Obj = _merge("", base, applied)
    others = set().union(*(paths for who, paths in owners.items() if who != me))
    for path in sorted(owners.get(me, set()) - wanted - others, key=len):
        _delete_at(merged, path)
    owners[me] = wanted
    _set_owners(merged, owners, str(applied.get("apiVersion", "")))
    return merged


def record_update(old: Obj | None, new: Obj, manager: str) -> None:
    """Give ``manager`` (operation Update) the fields that ``new`` changed, as a write does."""
    owners = owners_of(old)
    before, after = field_paths(old), field_paths(new)
    changed = {
        p
        for p in after
        if p not in before or (_is_leaf(new, p) and value_at(old, p) != value_at(new, p))
    }
    for paths in owners.values():
        paths -= {p for p in changed if _is_leaf(new, p)}
    owners.setdefault((manager, "Update"), set()).update(changed)
    _set_owners(new, owners, str(new.get("apiVersion", "")))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` deletes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
