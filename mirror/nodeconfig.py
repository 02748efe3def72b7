"""Node mirror configuration from the lock: nodes pull each source repository from its copy in R.

Pure: lock entries and the registry server in, the text of one configuration format out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from mirror.errors import InputError
from mirror.image.lock import LockEntry, plan_destinations
from mirror.image.reference import RegistryServer

NODE_FORMATS = ("crio", "k3s", "openshift", "containerd")
OPENSHIFT_API = "config.openshift.io/v1"
OPENSHIFT_NAME = "meshlift-mirrors"
MANAGED_BY = {"app.kubernetes.io/managed-by": "meshlift"}
CONTAINERD_REFUSAL = (
    "--format containerd: hosts.toml maps a registry to mirror hosts but cannot map a repository"
    " path to another ({example}); use --format k3s (k3s, RKE2), crio (CRI-O, Podman) or"
    " openshift, or deploy with images rewritten to the registry"
)


@dataclass(frozen=True, order=True)
class RepositoryMirror:
    """One source repository (``docker.io/library/nats``) and its copy in the registry."""

    registry: str
    path: str
    mirror_host: str
    mirror_path: str

    @property
    def source(self) -> str:
        """``registry/path`` of the source repository."""
        return f"{self.registry}/{self.path}"

    @property
    def mirror(self) -> str:
        """``host/path`` of the repository in the registry."""
        return f"{self.mirror_host}/{self.mirror_path}"


def repository_mirrors(
    entries: Iterable[LockEntry], server: RegistryServer
) -> list[RepositoryMirror]:
    """Each locked source repository and its destination repository, sorted by source.

    Node mirrors map whole repositories, so two source repositories flattened to one
    destination repository are an InputError (a tag of one would be served from the other).
    """
    by_destination: dict[str, RepositoryMirror] = {}
    for entry, destination in plan_destinations(entries, server):
        route = RepositoryMirror(
            entry.source.registry,
            entry.source.repository,
            destination.registry,
            destination.repository,
        )
        other = by_destination.setdefault(route.mirror, route)
        if other != route:
            raise InputError(
                f"{other.source} and {route.source} both map to the repository {route.mirror};"
                " node mirrors map whole repositories: mirror them to different registry servers"
            )
    return sorted(by_destination.values())


def node_config(
    fmt: str, entries: Iterable[LockEntry], server: RegistryServer, insecure: frozenset[str]
) -> str:
    """The node configuration in ``fmt`` (one of :data:`NODE_FORMATS`) for the lock's images.

    ``insecure``: registry hosts reached over plain HTTP or unverified TLS.
    """
    mirrors = repository_mirrors(entries, server)
    if fmt == "containerd":
        shown = next((m for m in mirrors if m.registry == "docker.io"), None) or next(
            iter(mirrors), None
        )
        example = f"{shown.source} to {shown.mirror}" if shown else "a/b to R/b"
        raise InputError(CONTAINERD_REFUSAL.format(example=example))
    if fmt == "crio":
        return registries_conf(mirrors, insecure)
    if fmt == "k3s":
        return k3s_registries(mirrors, insecure)
    if fmt == "openshift":
        return openshift_mirror_sets(mirrors, insecure)
    raise InputError(
        f"unknown node configuration format {fmt!r} (one of {', '.join(NODE_FORMATS)})"
    )


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value)


def registries_conf(mirrors: Iterable[RepositoryMirror], insecure: frozenset[str]) -> str:
    """containers-registries.conf v2 (CRI-O, Podman): one ``[[registry]]`` per repository."""
    lines = [
        "# containers-registries.conf(5) v2 for CRI-O and Podman, written by `mirror node-config`:",
        "# each locked repository is pulled from its copy in the private registry first.",
        "# Install as /etc/containers/registries.conf.d/50-meshlift.conf.",
    ]
    for route in mirrors:
        lines += ["", "[[registry]]"]
        lines += [f"prefix = {_toml(route.source)}", f"location = {_toml(route.source)}"]
        if route.registry in insecure:
            lines.append("insecure = true")
        lines += ["", "[[registry.mirror]]", f"location = {_toml(route.mirror)}"]
        if route.mirror_host in insecure:
            lines.append("insecure = true")
    return "\n".join(lines) + "\n"


def _anchored(path: str) -> str:
    """A regular expression matching exactly ``path`` (paths hold only ``[a-z0-9._/-]``)."""
    return "^" + path.replace(".", "\\.") + "$"


def k3s_registries(mirrors: Iterable[RepositoryMirror], insecure: frozenset[str]) -> str:
    """k3s/RKE2 ``registries.yaml``: per source registry, R as endpoint with rewrite rules."""
    by_registry: dict[str, dict[str, Any]] = {}
    for route in mirrors:
        scheme = "http" if route.mirror_host in insecure else "https"
        entry = by_registry.setdefault(
            route.registry, {"endpoint": [f"{scheme}://{route.mirror_host}"], "rewrite": {}}
        )
        entry["rewrite"][_anchored(route.path)] = route.mirror_path
    header = (
        "# k3s/RKE2 registries.yaml, written by `mirror node-config`: each locked repository\n"
        "# is pulled from its copy in the private registry. Install as\n"
        "# /etc/rancher/k3s/registries.yaml (RKE2: /etc/rancher/rke2/) and restart the service.\n"
    )
    return header + yaml.safe_dump({"mirrors": by_registry}, sort_keys=False)


def openshift_mirror_sets(mirrors: Iterable[RepositoryMirror], insecure: frozenset[str]) -> str:
    """An ImageDigestMirrorSet and an ImageTagMirrorSet (``config.openshift.io/v1``)."""
    routes = [{"source": route.source, "mirrors": [route.mirror]} for route in mirrors]
    objects = [
        {
            "apiVersion": OPENSHIFT_API,
            "kind": kind,
            "metadata": {"name": OPENSHIFT_NAME, "labels": dict(MANAGED_BY)},
            "spec": {field: routes},
        }
        for kind, field in (
            ("ImageDigestMirrorSet", "imageDigestMirrors"),
            ("ImageTagMirrorSet", "imageTagMirrors"),
        )
    ]
    header = "# OpenShift mirror sets, written by `mirror node-config`: `oc apply -f` this file.\n"
    hosts = sorted({route.mirror_host for route in mirrors} & insecure)
    if hosts:
        header += (
            f"# {', '.join(hosts)}: add to spec.registrySources.insecureRegistries"
            " of image.config.openshift.io/cluster.\n"
        )
    return header + yaml.safe_dump_all(objects, sort_keys=False)
