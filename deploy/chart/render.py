"""Helm's own template engine renders the chart: in-process, or a ``helm`` binary as fallback.

``helm_python`` (helm-python-sdk, Helm 4's Go SDK through ctypes) renders in-process, offline
as ``helm template`` or, given a release configuration, cluster-aware (``lookup``) as an
install or upgrade renders. Where it cannot load, ``helm template --include-crds`` from a
``helm`` on PATH does the offline job.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy.chart.manifests import parse_documents
from deploy.chart.values import (
    ValueFlags,
    check_ours_kept,
    flatten,
    merge_values,
    one_line,
    user_values,
)
from deploy.errors import InputError

Obj = dict[str, Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChartInput:
    """A chart to render: a directory or ``.tgz`` on disk, or ``.tgz`` bytes; ``where`` names it."""

    where: str
    path: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class _Request:
    """One render: the chart, the user's values, meshlift's values, release and namespace.

    ``base``: the user values of the deployed release, which an upgrade keeps; ``config``: a
    ``helm_python.Config`` to render against the cluster (``lookup``) as an install or an
    upgrade (``upgrade``) does, else offline as ``helm template``.
    """

    chart: ChartInput
    flags: ValueFlags
    ours: Mapping[str, Any]
    release: str
    namespace: str
    base: Mapping[str, Any] | None = None
    config: Any = None
    upgrade: bool = False


@dataclass(frozen=True)
class ChartFiles:
    """What a release chart keeps of the chart it stands for: metadata, ``crds/``, values."""

    metadata: Mapping[str, Any]
    crds: tuple[tuple[str, str], ...]
    values: Mapping[str, Any]
    schema: Mapping[str, Any] | None


@dataclass(frozen=True)
class Rendered:
    """The chart's ``crds/`` and rendered templates, the values given, and the renderer."""

    crds: list[Obj]
    templates: list[Obj]
    renderer: str
    values: dict[str, Any] = field(default_factory=dict)
    files: ChartFiles | None = None

    @property
    def objects(self) -> list[Obj]:
        """``crds/`` first, then the templates, as ``helm template --include-crds`` prints."""
        return self.crds + self.templates


def helm_library() -> ModuleType | None:
    """``helm_python`` if its native library loads here, else None."""
    try:
        import helm_python

        helm_python.helm_c_version()
    except Exception as exc:  # ImportError, or HelmLibraryError from the ctypes loader
        log.debug("helm-python cannot load: %s", exc)
        return None
    return helm_python


def _parse_templates(templates: Mapping[str, str]) -> list[Obj]:
    objects: list[Obj] = []
    for name in sorted(templates):
        if not name.endswith("NOTES.txt"):
            objects.extend(parse_documents(templates[name], name))
    return objects


def load_chart(helm: ModuleType, chart: ChartInput) -> Any:
    """The chart loaded by Helm's loader; an InputError when it is not a chart."""
    try:
        if chart.data is not None:
            return helm.Chart.load_archive(chart.data)
        return helm.Chart.load(chart.path)
    except helm.HelmError as exc:
        raise InputError(f"{chart.where}: not a Helm chart: {one_line(str(exc))}") from None


def _render_with_library(helm: ModuleType, request: _Request) -> Rendered:
    chart = request.chart
    user = user_values(helm, request.flags)
    check_ours_kept(user, request.ours)
    values = merge_values(merge_values(request.base or {}, user), request.ours)
    with load_chart(helm, chart) as loaded:
        try:
            loaded.validate_schema(loaded.merge_values(values))
        except helm.HelmError as exc:
            raise InputError(
                f"{chart.where}: values do not match values.schema.json: {one_line(str(exc))}"
            ) from None
        phase = {"is_upgrade": True} if request.upgrade else {"is_install": True}
        where = {"name": request.release, "namespace": request.namespace, **phase}
        try:
            if request.config is not None:
                templates = request.config.render(loaded, values, **where)
            else:
                templates = loaded.render(values, **where)
        except helm.HelmError as exc:
            raise InputError(f"{chart.where}: rendering failed: {one_line(str(exc))}") from None
        crd_files = tuple((c["filename"], c["data"]) for c in loaded.crds)
        files = ChartFiles(loaded.metadata, crd_files, loaded.values, loaded.schema)
    crds = [o for name, text in crd_files for o in parse_documents(text, f"{chart.where}: {name}")]
    version = f"helm-python {helm.__version__} (Helm {helm.helm_sdk_version()})"
    return Rendered(crds, _parse_templates(templates), version, values, files)


def _set_flags(ours: Mapping[str, Any]) -> list[str]:
    """``--set``/``--set-string`` arguments for meshlift's values (strings stay strings)."""
    args: list[str] = []
    for key, value in flatten(ours).items():
        if isinstance(value, bool):
            args += ["--set", f"{key}={str(value).lower()}"]
        else:
            args += ["--set-string", f"{key}={value}"]
    return args


def _render_with_binary(binary: str, request: _Request) -> Rendered:
    chart, flags = request.chart, request.flags
    with tempfile.TemporaryDirectory(prefix="meshlift-chart-") as scratch:
        path = chart.path
        if chart.data is not None:
            path = str(Path(scratch) / "chart.tgz")
            Path(path).write_bytes(chart.data)
        assert path is not None
        options = ["--namespace", request.namespace, "--include-crds"]
        command = [binary, "template", request.release, path, *options]
        for flag, given in (
            ("--values", flags.files),
            ("--set", flags.set),
            ("--set-string", flags.set_string),
            ("--set-file", flags.set_file),
            ("--set-json", flags.set_json),
            ("--set-literal", flags.set_literal),
        ):
            for value in given:
                command += [flag, value]
        command += _set_flags(request.ours)
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InputError(f"{chart.where}: helm did not run: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise InputError(f"{chart.where}: helm template failed: {lines[-1]}")
    objects = parse_documents(done.stdout, f"helm template {chart.where}")
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    others = [o for o in objects if o not in crds]
    return Rendered(crds, others, f"helm binary {binary}")


def render_chart(
    chart: ChartInput,
    flags: ValueFlags,
    ours: Mapping[str, Any],
    release: str,
    namespace: str,
    *,
    base: Mapping[str, Any] | None = None,
    config: Any = None,
    upgrade: bool = False,
) -> Rendered:
    """Render ``chart`` as Helm does, ``ours`` over the user's values over ``base``.

    Offline (``helm template --include-crds``) unless ``config`` names a cluster. The user's
    values follow Helm's order; a user value that contradicts one of ``ours`` is an
    InputError, so is a value ``values.schema.json`` refuses (before anything is sent).
    """
    request = _Request(chart, flags, ours, release, namespace, base, config, upgrade)
    helm = helm_library()
    if helm is not None:
        rendered = _render_with_library(helm, request)
    else:
        binary = shutil.which("helm")
        if binary is None:
            raise InputError(
                "cannot render the chart: the helm-python library does not load here and no"
                " helm binary is on PATH; install one, or pass rendered YAML with --manifests"
            )
        rendered = _render_with_binary(binary, request)
    log.debug("rendered %s with %s", chart.where, rendered.renderer)
    return rendered
