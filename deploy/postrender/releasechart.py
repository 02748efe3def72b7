"""The chart Helm installs: the official chart's metadata and ``crds/``, templates post-rendered.

Helm's install action has no post-renderer hook in helm-python, so each post-rendered object
becomes a file of the chart (``rendered/NNN-kind-name.yaml``) and a template that only reads
it (``{{ .Files.Get ... }}``): Helm renders exactly those objects, sorts, owns, hooks and
stores them, and keeps the chart's name, version, appVersion and ``kubeVersion``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from deploy.chart.manifests import dump_documents
from deploy.chart.settings import RELEASE
from deploy.postrender.plan import Plan

# Chart.yaml for rendered YAML given with --manifests: a release needs a chart.
MANIFESTS_CHART = {"apiVersion": "v2", "name": RELEASE, "version": "0.0.0-manifests"}


def _file_name(index: int, obj: dict[str, Any]) -> str:
    kind = str(obj.get("kind", "object")).lower()
    name = str((obj.get("metadata") or {}).get("name", "unnamed"))
    return f"{index:03d}-{kind}-{name}.yaml"


def write_release_chart(plan: Plan, directory: Path) -> Path:
    """Write the release chart of ``plan`` into ``directory`` (empty or new); return it."""
    files = plan.files
    metadata = dict(files.metadata) if files else dict(MANIFESTS_CHART)
    metadata.setdefault("apiVersion", "v2")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Chart.yaml").write_text(yaml.safe_dump(metadata), encoding="utf-8")
    (directory / "values.yaml").write_text(
        yaml.safe_dump(dict(files.values) if files else {}), encoding="utf-8"
    )
    if files and files.schema:
        (directory / "values.schema.json").write_text(json.dumps(files.schema), encoding="utf-8")
    crds = directory / "crds"
    crds.mkdir()
    if files:
        for name, text in files.crds:
            target = crds / name.removeprefix("crds/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    else:
        for index, crd in enumerate(plan.crds):
            (crds / _file_name(index, crd)).write_text(dump_documents([crd]), encoding="utf-8")
    templates, rendered = directory / "templates", directory / "rendered"
    templates.mkdir()
    rendered.mkdir()
    for index, obj in enumerate(plan.objects):
        name = _file_name(index, obj)
        (rendered / name).write_text(dump_documents([obj]), encoding="utf-8")
        (templates / name).write_text(f'{{{{ .Files.Get "rendered/{name}" }}}}\n', encoding="utf-8")
    return directory
