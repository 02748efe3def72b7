"""OpenAPI v3 discovery: the list of group-versions and one document per group-version.

A document names each kind's paths and operations, enough for client-go to see that PATCH
takes ``fieldValidation`` (and so to leave validation to the server); it carries no schemas.
"""

from __future__ import annotations

import hashlib
import json

from tests.fakekube.patch import Obj
from tests.fakekube.store import ApiError, ApiType, Store

FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "Ignore, Warn or Strict: what the server does with unknown or duplicate fields",
    "schema": {"type": "string", "uniqueItems": True},
}
_OTHER_PARAMS = ("dryRun", "fieldManager")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def root(store: Store) -> Obj:
    """``/openapi/v3``: each served group-version with the URL of its document."""
    paths: Obj = {}
    for group, version in sorted({(t.group, t.version) for t in store.served_types()}):
        path = _gv_path(group, version)
        digest = hashlib.sha512(json.dumps(document(store, path)).encode()).hexdigest()[:64]
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": paths}


def document(store: Store, gv_path: str) -> Obj:
    """``/openapi/v3/<gv_path>``: the group-version's paths; 404 if nothing is served there."""
    types = [t for t in store.served_types() if _gv_path(t.group, t.version) == gv_path]
    if not types:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    paths: Obj = {}
    for api_type in sorted(types, key=lambda t: t.plural):
        paths.update(_paths(api_type))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0-fakekube"},
        "paths": paths,
    }


def _paths(api_type: ApiType) -> Obj:
    base = "/" + _gv_path(api_type.group, api_type.version)
    scope = "/namespaces/{namespace}" if api_type.namespaced else ""
    gvk = {"group": api_type.group, "version": api_type.version, "kind": api_type.kind}

    def operation(action: str, params: tuple[Obj, ...] = ()) -> Obj:
        listed = [{"name": n, "in": "query", "schema": {"type": "string"}} for n in _OTHER_PARAMS]
        return {
            "operationId": f"{action}{api_type.kind}",
            "parameters": [*params, *listed],
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        }

    collection = f"{base}{scope}/{api_type.plural}"
    return {
        collection: {
            "get": operation("list"),
            "post": operation("post", (FIELD_VALIDATION,)),
        },
        f"{collection}/{{name}}": {
            "get": operation("get"),
            "put": operation("put", (FIELD_VALIDATION,)),
            "patch": operation("patch", (FIELD_VALIDATION,)),
            "delete": operation("delete"),
        },
    }
