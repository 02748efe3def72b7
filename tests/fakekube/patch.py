"""Patch semantics: server-side apply (approximated) and JSON merge patch."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakekube.store import Obj


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
