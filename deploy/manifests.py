"""Where the mesh's manifests come from: the embedded bundle, rendered YAML, or a Helm chart."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TextIO

import yaml

from deploy.errors import InputError, ManifestError

Obj = dict[str, Any]

BUNDLE_NAMESPACE = "nginx-mesh"
ENVIRONMENTS = ("kubernetes", "openshift")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# Kinds without a namespace; any other kind (custom resources too) is taken as namespaced.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "SecurityContextConstraints",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)


def is_namespaced(obj: Obj) -> bool:
    """Whether ``obj`` lives in a namespace (by kind, without asking a cluster)."""
    return obj.get("kind") not in CLUSTER_SCOPED_KINDS


def describe(obj: Obj) -> str:
    """``Kind namespace/name`` (or ``Kind name`` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))
    return f"{obj.get('kind')} {name}"


def _check_object(doc: object, where: str) -> Obj:
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: not a Kubernetes object (a mapping)")
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ManifestError(f"{where}: missing {key}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ManifestError(f"{where}: {doc['kind']} without metadata.name")
    return doc


def parse_documents(text: str, source: str) -> list[Obj]:
    """The Kubernetes objects in a multi-document YAML (or JSON) text; ``kind: List`` expanded."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ManifestError(f"{source}: not valid YAML{at}: {problem}") from None
    objects: list[Obj] = []
    for number, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        where = f"{source}: document {number}"
        if isinstance(doc, dict) and doc.get("kind") == "List":
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ManifestError(f"{where}: List items must be a list")
            objects.extend(_check_object(i, f"{where} item {n}") for n, i in enumerate(items, 1))
        else:
            objects.append(_check_object(doc, where))
    return objects


def _walk_bundle(directory: Traversable) -> list[Traversable]:
    return sorted(
        (f for f in directory.iterdir() if f.is_file() and f.name.endswith(MANIFEST_SUFFIXES)),
        key=lambda f: f.name,
    )


def load_bundle(environment: str, namespace: str = BUNDLE_NAMESPACE) -> list[Obj]:
    """The embedded NSM 2.0.0 control plane for ``environment``, in ``namespace``."""
    if environment not in ENVIRONMENTS:
        raise InputError(f"unknown environment {environment!r}: use {' or '.join(ENVIRONMENTS)}")
    root = resources.files("deploy").joinpath("bundle")
    parts = ["common"] + (["openshift"] if environment == "openshift" else [])
    objects: list[Obj] = []
    for part in parts:
        for file in _walk_bundle(root.joinpath(part)):
            objects.extend(
                parse_documents(file.read_text(encoding="utf-8"), f"bundle/{part}/{file.name}")
            )
    return relocate(objects, namespace) if namespace != BUNDLE_NAMESPACE else objects


def relocate(objects: Iterable[Obj], namespace: str) -> list[Obj]:
    """Move bundle objects from ``nginx-mesh`` to ``namespace``.

    Renames the Namespace and changes every ``namespace:`` field naming ``nginx-mesh``
    (object metadata, RBAC subjects, webhook services).
    """

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: namespace if k == "namespace" and v == BUNDLE_NAMESPACE else walk(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    moved = [walk(obj) for obj in objects]
    for obj in moved:
        if obj["kind"] == "Namespace" and obj["metadata"]["name"] == BUNDLE_NAMESPACE:
            obj["metadata"]["name"] = namespace
    return moved


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    return [path]


def load_paths(paths: Sequence[str], stdin: TextIO | None = None) -> list[Obj]:
    """Objects from ``--manifests`` values: files, directories (recursively) or ``-``."""
    objects: list[Obj] = []
    for value in paths:
        if value == "-":
            objects.extend(parse_documents((stdin or sys.stdin).read(), "<stdin>"))
            continue
        path = Path(value)
        if not path.exists():
            raise ManifestError(f"--manifests {value}: no such file or directory")
        files = _manifest_files(path)
        if not files:
            raise ManifestError(f"--manifests {value}: no .yaml, .yml or .json files in it")
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
                raise ManifestError(f"{file}: cannot read: {reason}") from None
            objects.extend(parse_documents(text, str(file)))
    if not objects:
        raise ManifestError(f"--manifests {' '.join(paths)}: no Kubernetes objects found")
    return objects


def chart_values(
    registry_server: str, image_tag: str, disable_public_images: bool, environment: str
) -> dict[str, str]:
    """The NSM chart values meshlift sets (``--set`` keys of the official chart)."""
    return {
        "registry.server": registry_server,
        "registry.imageTag": image_tag,
        "registry.disablePublicImages": str(disable_public_images).lower(),
        "environment": environment,
    }


def render_chart(
    chart: str, namespace: str, values: dict[str, str], helm: str | None = None
) -> list[Obj]:
    """Render ``chart`` with ``helm template`` and parse its output."""
    binary = helm or shutil.which("helm")
    if binary is None:
        raise InputError(
            "--chart needs the helm binary, which is not on PATH: install helm, or run"
            " `helm template` elsewhere and pass its output with --manifests"
        )
    if not Path(chart).exists():
        raise InputError(f"--chart {chart}: no such file or directory")
    command = [binary, "template", "nginx-mesh", chart, "--namespace", namespace]
    for key, value in values.items():
        command += ["--set-string" if key == "registry.imageTag" else "--set", f"{key}={value}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"--chart {chart}: helm did not run: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise InputError(f"--chart {chart}: helm template failed: {lines[-1]}")
    return parse_documents(done.stdout, f"helm template {chart}")


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so embedded configs stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_documents(objects: Iterable[Obj]) -> str:
    """A multi-document YAML text of ``objects``, keys in their original order."""
    return yaml.dump_all(
        objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True
    )
