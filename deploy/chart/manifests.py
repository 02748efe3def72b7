"""Kubernetes objects as YAML: parsed from rendered manifests, and dumped for display."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from deploy.errors import ManifestError

Obj = dict[str, Any]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# libyaml's safe loader when PyYAML has it (ten times faster on a chart's CRDs), else PyYAML's.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        docs = list(yaml.load_all(text, Loader=SAFE_LOADER))
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
