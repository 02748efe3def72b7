"""Helm's own template engine: every call to ``helm_python`` is here; ``helm`` the fallback.

``helm_python`` (helm-python-sdk, Helm 4's Go SDK through ctypes) renders in-process. Where it
cannot load, ``helm template --include-crds`` from a ``helm`` on PATH does the same job.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy.errors import InputError
from deploy.manifests import parse_documents

Obj = dict[str, Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChartInput:
    """A chart to render: a directory or ``.tgz`` on disk, or ``.tgz`` bytes; ``where`` names it."""

    where: str
    path: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class ValueFlags:
    """Helm's value flags as given: ``-f``, ``--set``, ``--set-string``, ``--set-file``."""

    files: tuple[str, ...] = ()
    set: tuple[str, ...] = ()
    set_string: tuple[str, ...] = ()
    set_file: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Request:
    """One render: the chart, the user's value flags, meshlift's values, release and namespace."""

    chart: ChartInput
    flags: ValueFlags
    ours: Mapping[str, Any]
    release: str
    namespace: str


@dataclass(frozen=True)
class Rendered:
    """The chart's objects (``crds/`` first, then templates) and which renderer made them."""

    objects: list[Obj]
    renderer: str


def _one_line(text: str) -> str:
    return "; ".join(line.strip(" -") for line in str(text).splitlines() if line.strip(" -"))


def _library() -> ModuleType | None:
    """``helm_python`` if its native library loads here, else None."""
    try:
        import helm_python

        helm_python.helm_c_version()
    except Exception as exc:  # ImportError, or HelmLibraryError from the ctypes loader
        log.debug("helm-python cannot load: %s", exc)
        return None
    return helm_python


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's ``mergeMaps``: nested mappings merge, anything else in ``override`` wins."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_values(current, value)
        else:
            merged[key] = value
    return merged


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _check_ours_kept(user: Mapping[str, Any], ours: Mapping[str, Any]) -> None:
    """A user value for a key meshlift sets, with another value, is an InputError."""
    mine = _flatten(ours)
    for key, value in _flatten(user).items():
        if key in mine and value != mine[key]:  # neither value shown: one may be a password
            raise InputError(
                f"the chart values set {key}, which meshlift sets: use deploy's own flags"
                " (--registry-server, --image-tag, --disable-public-images, --environment,"
                " --registry-username/--registry-password-stdin/--registry-key)"
            )


def _user_values(helm: ModuleType, flags: ValueFlags) -> dict[str, Any]:
    """The user's values in Helm's precedence: ``-f`` files, --set, --set-string, --set-file."""
    values: dict[str, Any] = {}
    for file in flags.files:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise InputError(f"--values {file}: cannot read: {reason}") from None
        try:
            values = merge_values(values, helm.values_from_yaml(text))
        except helm.HelmError as exc:
            raise InputError(f"--values {file}: {_one_line(str(exc))}") from None
    for flag, parse, expressions in (
        ("--set", helm.parse_set_string, flags.set),
        ("--set-string", helm.parse_set_string_values, flags.set_string),
        ("--set-file", helm.parse_set_file, flags.set_file),
    ):
        for expression in expressions:
            try:
                values = merge_values(values, parse(expression))
            except helm.HelmError as exc:
                raise InputError(f"{flag} {expression}: {_one_line(str(exc))}") from None
    return values


def _parse_rendered(crds: list[tuple[str, str]], templates: Mapping[str, str]) -> list[Obj]:
    objects: list[Obj] = []
    for name, text in crds:
        objects.extend(parse_documents(text, name))
    for name in sorted(templates):
        if not name.endswith("NOTES.txt"):
            objects.extend(parse_documents(templates[name], name))
    return objects


def _render_with_library(helm: ModuleType, request: _Request) -> Rendered:
    chart = request.chart
    user = _user_values(helm, request.flags)
    _check_ours_kept(user, request.ours)
    values = merge_values(user, request.ours)
    try:
        if chart.data is not None:
            loaded = helm.Chart.load_archive(chart.data)
        else:
            loaded = helm.Chart.load(chart.path)
    except helm.HelmError as exc:
        raise InputError(f"{chart.where}: not a Helm chart: {_one_line(str(exc))}") from None
    with loaded:
        try:
            loaded.validate_schema(loaded.merge_values(values))
        except helm.HelmError as exc:
            raise InputError(
                f"{chart.where}: values do not match values.schema.json: {_one_line(str(exc))}"
            ) from None
        try:
            templates = loaded.render(
                values, name=request.release, namespace=request.namespace, is_install=True
            )
        except helm.HelmError as exc:
            raise InputError(f"{chart.where}: rendering failed: {_one_line(str(exc))}") from None
        crds = [(f"{chart.where}: {c['filename']}", c["data"]) for c in loaded.crds]
    version = f"helm-python {helm.__version__} (Helm {helm.helm_sdk_version()})"
    return Rendered(_parse_rendered(crds, templates), version)


def _set_flags(ours: Mapping[str, Any]) -> list[str]:
    """``--set``/``--set-string`` arguments for meshlift's values (strings stay strings)."""
    args: list[str] = []
    for key, value in _flatten(ours).items():
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
    return Rendered(crds + [o for o in objects if o not in crds], f"helm binary {binary}")


def render_chart(
    chart: ChartInput,
    flags: ValueFlags,
    ours: Mapping[str, Any],
    release: str,
    namespace: str,
) -> Rendered:
    """Render ``chart`` as ``helm template --include-crds`` does, ``ours`` over the user's values.

    The user's values follow Helm's precedence; a user value that contradicts one of ``ours``
    is an InputError, so is a value ``values.schema.json`` refuses (before anything is sent).
    """
    request = _Request(chart, flags, ours, release, namespace)
    helm = _library()
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
