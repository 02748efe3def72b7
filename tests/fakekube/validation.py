"""Strict field validation: the fields of an object that its kind's schema does not declare.

Built-in kinds are checked against the official schemas the ``kubernetes-validate`` package
ships (for the server's minor version), custom kinds against their CRD's openAPIV3Schema.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from tests.fakekube.patch import Obj

SCHEMA_VERSION = "v1.31.0-local-strict"
_TOP = ("apiVersion", "kind", "metadata")


def _schema_dir() -> Any:
    return resources.files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMA_VERSION


@functools.cache
def _definitions() -> dict[str, Obj]:
    defs: dict[str, Obj] = json.loads((_schema_dir() / "_definitions.json").read_text())["$defs"]
    return defs


@functools.cache
def builtin_schema(api_version: str, kind: str) -> Obj | None:
    """The official schema of a built-in kind, or None if the package has none."""
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    found = _schema_dir() / f"{kind.lower()}-{short}.json"
    if not found.is_file():
        return None
    schema: Obj = json.loads(found.read_text())
    return schema


def crd_schema(crd: Obj, version: str) -> Obj | None:
    """The openAPIV3Schema a CRD gives ``version``, with the metadata every object has."""
    for served in (crd.get("spec") or {}).get("versions") or []:
        if served.get("name") == version:
            schema = (served.get("schema") or {}).get("openAPIV3Schema")
            if not schema:
                return None
            properties = dict(schema.get("properties") or {})
            meta_ref = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
            properties.update(apiVersion={}, kind={}, metadata={"$ref": meta_ref})
            return {**schema, "properties": properties}
    return None


def unknown_fields(obj: Obj, schema: Obj, keyed: bool) -> list[str]:
    """Paths of the fields ``schema`` does not declare, in the server's two spellings.

    ``keyed=False``: as strict decoding says them (``spec.containers[0].foo``);
    ``keyed=True``: as server-side apply does (``.spec.containers[name="c"].foo``).
    """
    found: list[str] = []
    _walk(obj, schema, "." if keyed else "", keyed, found)
    return found


def _resolve(schema: Obj) -> Obj:
    while "$ref" in schema and isinstance(schema["$ref"], str):
        name = schema["$ref"].rpartition("/")[2]
        schema = _definitions().get(name, {})
    return schema


def _join(path: str, key: str) -> str:
    return f"{path}{key}" if path in ("", ".") else f"{path}.{key}"


def _walk(value: Any, schema: Obj, path: str, keyed: bool, found: list[str]) -> None:
    schema = _resolve(schema)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = _join(path, key)
            if properties is not None and key in properties:
                _walk(item, properties[key], where, keyed, found)
            elif isinstance(extra, dict):
                _walk(item, extra, where, keyed, found)
            elif properties is not None and extra in (None, False):
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        for index, item in enumerate(value):
            if keyed and keys and isinstance(item, dict):
                named = ",".join(f"{k}={json.dumps(item.get(k))}" for k in keys if k in item)
                element = f"{path}[{named}]"
            else:
                element = f"{path}[{index}]"
            _walk(item, schema["items"], element, keyed, found)
