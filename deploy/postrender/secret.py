"""The registry pull Secret of the seed: built as a plain dict, and redacted for display."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import yaml

from deploy.labels import SECRET_LABELS, SECRET_NAME
from mirror.net.credentials import Credentials

SECRET_TYPE = "kubernetes.io/dockerconfigjson"
DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
REDACTED = "<redacted>"

# Go's encoding/json escapes these inside strings; kubectl's output is made by it.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_json(value: object) -> bytes:
    """Compact JSON byte-for-byte as Go's ``json.Marshal`` writes it."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def dockerconfigjson(server: str, credentials: Credentials) -> bytes:
    """The ``.dockerconfigjson`` content, identical to ``kubectl create secret docker-registry``.

    ``server`` is the ``--registry-server`` value exactly as given.
    """
    token = f"{credentials.username}:{credentials.password}".encode()
    entry = {
        "username": credentials.username,
        "password": credentials.password,
        "auth": base64.b64encode(token).decode("ascii"),
    }
    # Go omits empty fields (``omitempty``) and so do we.
    return _go_json({"auths": {server: {k: v for k, v in entry.items() if v}}})


def registry_secret(server: str, credentials: Credentials, namespace: str) -> dict[str, Any]:
    """The ``nginx-mesh-registry-key`` Secret for ``namespace``, in the seed's shape."""
    encoded = base64.b64encode(dockerconfigjson(server, credentials)).decode("ascii")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": dict(SECRET_LABELS)},
        "type": SECRET_TYPE,
        "data": {DOCKERCONFIGJSON_KEY: encoded},
    }


def embedded_secrets(obj: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A ConfigMap's data entries that hold a Secret manifest, parsed (the chart keeps one for
    a hook to ``kubectl create``); nothing for any other object."""
    if obj.get("kind") != "ConfigMap":
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    for key, text in (obj.get("data") or {}).items():
        if isinstance(text, str) and "kind: Secret" in text:
            docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            if any(d.get("kind") == "Secret" for d in docs):
                found[key] = docs
    return found


def with_embedded(obj: dict[str, Any], key: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of the ConfigMap ``obj`` whose entry ``key`` holds ``docs``."""
    text = "---\n" + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
    return {**obj, "data": {**obj["data"], key: text}}


def redact_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with every Secret value replaced by ``<redacted>``; others unchanged.

    Secret manifests kept in a ConfigMap's data are redacted too.
    """
    embedded = embedded_secrets(obj)
    if embedded:
        for key, docs in embedded.items():
            obj = with_embedded(obj, key, [redact_secret(d) for d in docs])
        return obj
    if obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
        return obj
    redacted = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        values = redacted.get(field)
        if isinstance(values, dict):
            redacted[field] = dict.fromkeys(values, REDACTED)
    return redacted


def is_registry_secret(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` is a Secret by the name of ours (the chart's, or ours itself)."""
    return bool(obj["kind"] == "Secret" and obj["metadata"]["name"] == SECRET_NAME)
