"""The post-renderer: the chart's output with every image in R and the labelled pull Secret.

What it returns is what the release stores, so ``helm get manifest``, ``history`` and
``rollback`` show and restore exactly what runs. Hooks stay among the objects, with their
annotations: Helm runs them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from deploy.chart.manifests import load_paths
from deploy.chart.render import ChartFiles, Rendered, render_chart
from deploy.chart.settings import RELEASE, Settings, chart_values
from deploy.chart.source import chart_from_flag, chart_from_lock
from deploy.chart.values import ValueFlags
from deploy.errors import InputError, PublicImagesLeft
from deploy.labels import SECRET_NAME
from deploy.postrender.policy import Mode, admission_policy, is_policy
from deploy.postrender.rewrite import (
    ImageRules,
    ImageUse,
    add_pull_secret,
    disallowed_images,
    rewrite_object,
)
from deploy.postrender.secret import (
    embedded_secrets,
    is_registry_secret,
    redact_secret,
    registry_secret,
    with_embedded,
)
from mirror.image.lock import Lock, LockEntry
from mirror.image.reference import Reference, flatten_destination, parse_reference
from mirror.net.hosts import HostOptions

Obj = dict[str, Any]

NO_VALUES = ValueFlags()
DEFAULT_HOSTS = HostOptions()
HOOK_ANNOTATION = "helm.sh/hook"


def is_hook(obj: Obj) -> bool:
    """Whether Helm runs ``obj`` as a hook rather than keeping it in the release."""
    return HOOK_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


@dataclass(frozen=True)
class Plan:
    """What the release will hold: the chart's CRDs, the post-rendered objects, their images."""

    settings: Settings
    crds: tuple[Obj, ...]
    objects: tuple[Obj, ...]
    images: tuple[ImageUse, ...]
    renderer: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)
    files: ChartFiles | None = None
    # The digest a narrowed entry's signature names (the source's), by its place in R.
    signed: Mapping[Reference, str] = field(default_factory=dict)

    @property
    def resources(self) -> list[Obj]:
        """The objects the release owns (its hooks left out)."""
        return [o for o in self.objects if not is_hook(o)]

    def without_policy(self) -> Plan:
        """This plan without the admission policy (for a cluster that cannot serve it)."""
        kept = tuple(o for o in self.objects if not is_policy(o))
        return dataclasses.replace(self, objects=kept)

    @property
    def hooks(self) -> list[Obj]:
        """The chart's hooks, which Helm runs at their phase."""
        return [o for o in self.objects if is_hook(o)]

    def pull_images(self) -> list[Reference]:
        """Each distinct container image, parsed (for preflight)."""
        return sorted({parse_reference(use.image) for use in self.images})

    def redacted(self) -> list[Obj]:
        """The CRDs and objects with Secret data redacted, for display."""
        return [redact_secret(obj) for obj in (*self.crds, *self.objects)]


def _as_chart_secret(secret: Obj, chart_secret: Obj) -> Obj:
    """Our Secret in place of the chart's: its data and labels, the chart's annotations."""
    meta = chart_secret.get("metadata") or {}
    labels = {**(meta.get("labels") or {}), **secret["metadata"]["labels"]}
    merged = {**secret["metadata"], "labels": labels}
    if meta.get("annotations"):
        merged["annotations"] = dict(meta["annotations"])
    return {**secret, "metadata": merged}


def _without_namespace(obj: Obj) -> Obj:
    """``obj`` for ``kubectl create`` in whatever namespace the hook runs in."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "namespace"}
    return {**obj, "metadata": meta}


def build_plan(
    rendered: Rendered,
    entries: Iterable[LockEntry],
    settings: Settings,
    held: Mapping[Reference, str] | None = None,
) -> Plan:
    """Post-render ``rendered``: images rewritten, our Secret in place of the chart's.

    ``held``: digests R holds where they differ from the lock's pin (a narrowed index). With
    ``--disable-public-images``, an image that would still be pulled from elsewhere is a
    PublicImagesLeft error listing each one.
    """
    rules = ImageRules.from_lock(
        entries,
        settings.server,
        settings.image_tag,
        settings.disable_public_images,
        settings.pin_digests,
        held or {},
    )
    secret = None
    if settings.credentials is not None:
        secret = registry_secret(settings.registry_server, settings.credentials, settings.namespace)
    uses: list[ImageUse] = []
    objects: list[Obj] = []
    for obj in rendered.templates:
        for key, docs in embedded_secrets(obj).items():
            if secret is not None:
                kept = [_as_chart_secret(secret, d) if is_registry_secret(d) else d for d in docs]
                obj = with_embedded(obj, key, [_without_namespace(d) for d in kept])
        if is_registry_secret(obj):
            if secret is not None:
                objects.append(_as_chart_secret(secret, obj))
            continue
        new, found = rewrite_object(obj, rules)
        uses.extend(found)
        objects.append(add_pull_secret(new, SECRET_NAME) if secret is not None else new)
    if secret is not None and not any(is_registry_secret(o) and not is_hook(o) for o in objects):
        objects.append(secret)
    if settings.enforce_registry is not None:
        mode: Mode = "deny" if settings.enforce_registry == "deny" else "warn"
        objects.extend(admission_policy(settings.server, settings.namespace, mode))
    left = disallowed_images(uses, rules)
    if left:
        listed = "; ".join(f"{u.image} ({u.where}, {u.place})" for u in left)
        raise PublicImagesLeft(
            f"--disable-public-images: {len(left)} image(s) not under {settings.server}: {listed}."
            " Add them to images.lock and run `mirror sync`, or fix the manifests"
        )
    return Plan(
        settings,
        tuple(rendered.crds),
        tuple(objects),
        tuple(uses),
        rendered.renderer,
        rendered.values,
        rendered.files,
        _signed_digests(entries, settings, held or {}),
    )


def _signed_digests(
    entries: Iterable[LockEntry], settings: Settings, held: Mapping[Reference, str]
) -> dict[Reference, str]:
    """For each entry R holds a narrowed index of: the source digest its signature names."""
    found: dict[Reference, str] = {}
    for entry in entries:
        where = flatten_destination(entry.source.with_digest(None), settings.server)
        if entry.digest and where in held:
            found[where] = entry.digest
    return found


def load_rendered(
    settings: Settings,
    lock: Lock,
    manifest_paths: Sequence[str] = (),
    chart: str | None = None,
    values: ValueFlags = NO_VALUES,
    hosts: HostOptions = DEFAULT_HOSTS,
    stdin: TextIO | None = None,
    **render: Any,
) -> Rendered:
    """The chart rendered, or ``--manifests`` as given; ``render``: see ``render_chart``."""
    if manifest_paths and chart:
        raise InputError("--manifests and --chart are exclusive")
    if manifest_paths:
        if values.given:
            raise InputError("--set, --set-string, --set-file and --values need a chart")
        objects = load_paths(manifest_paths, stdin or sys.stdin)
        crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
        others = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
        return Rendered(crds, others, "rendered YAML", chart_values(settings))
    credentials = settings.credentials
    if chart:
        source = chart_from_flag(chart, settings.server, credentials, hosts)
    else:
        charts = lock.select_charts(settings.environment)
        source = chart_from_lock(charts, settings.server, credentials, hosts)
    ours = chart_values(settings)
    return render_chart(source, values, ours, RELEASE, settings.namespace, **render)
