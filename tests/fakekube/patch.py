"""Patch semantics: server-side apply (approximated), JSON merge patch and JSON patch."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakekube.store import ApiError, Obj


def apply_patch(existing: Obj, applied: Obj) -> Obj:
    """Server-side apply without field ownership: mappings merge recursively, the rest replaces.

    A real server also removes fields this manager applied before and omits now, and merges
    lists by their keys; see README.md.
    """

    def merge(old: Any, new: Any) -> Any:
        if isinstance(old, dict) and isinstance(new, dict):
            merged = dict(old)
            for key, value in new.items():
                merged[key] = merge(old.get(key), value)
            return merged
        return copy.deepcopy(new)

    result: Obj = merge(existing, applied)
    return result


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


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def json_patch(doc: Obj, operations: list[Obj]) -> Obj:
    """RFC 6902 JSON patch: ``add``, ``remove``, ``replace`` and ``test``."""
    result = copy.deepcopy(doc)
    for op in operations:
        parts = _pointer(op["path"])
        try:
            parent, last = _parent(result, parts), parts[-1]
            if op["op"] == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op["value"]:
                    raise ApiError(422, "Invalid", f"test failed at {op['path']}")
            elif op["op"] == "add":
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    parent.insert(index, copy.deepcopy(op["value"]))
                else:
                    parent[last] = copy.deepcopy(op["value"])
            elif op["op"] == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif op["op"] == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = copy.deepcopy(op["value"])
                elif last not in parent:
                    raise KeyError(last)
                else:
                    parent[last] = copy.deepcopy(op["value"])
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']!r}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", f"JSON patch path {op['path']} does not exist") from None
    return result
