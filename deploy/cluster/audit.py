"""``deploy audit``: what the cluster's Pods run, against what the private registry holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from deploy.cluster.client import Cluster
from deploy.labels import INJECT_SELECTOR
from deploy.postrender.rewrite import is_under_registry, registry_pins
from mirror.image.lock import LockEntry
from mirror.image.reference import Reference, RegistryServer, parse_reference
from mirror.net.credentials import Credentials
from mirror.net.hosts import HostOptions

Obj = dict[str, Any]
DigestLookup = Callable[[Reference], "str | None"]

# Where a Pod lists each kind of container, and where its status reports them.
CONTAINER_KINDS = (
    ("containers", "containerStatuses", "container"),
    ("initContainers", "initContainerStatuses", "init container"),
    ("ephemeralContainers", "ephemeralContainerStatuses", "ephemeral container"),
)
# The images the mesh injects into workloads: a Pod keeps them until it is re-rolled.
INJECTED_IMAGES = frozenset({"nginx-mesh-sidecar", "nginx-mesh-init"})
# The controller kind a Pod's owner leads to, through ReplicaSets (and Jobs of CronJobs).
_OWNER_PARENTS = {"ReplicaSet": ("apps/v1", "Deployment"), "Job": ("batch/v1", "CronJob")}
_OWNER_API = {"ReplicaSet": "apps/v1", "Job": "batch/v1"}

NOT_FROM_REGISTRY = "not from the registry"
OTHER_DIGEST = "other digest"
STALE_INJECTION = "stale injection"
NOT_PULLED = "not pulled"


@dataclass(frozen=True)
class RunningContainer:
    """One container of one Pod: the image it names and the image the kubelet ran."""

    namespace: str
    pod: str
    workload: str
    kind: str
    name: str
    image: str
    image_id: str


@dataclass(frozen=True)
class Finding:
    """Something a Pod runs that did not come, as it should have, from the registry."""

    container: RunningContainer
    problem: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        """The finding as the JSON output lists it."""
        c = self.container
        return {
            "namespace": c.namespace,
            "pod": c.pod,
            "workload": c.workload,
            "container": f"{c.kind} {c.name}",
            "image": c.image,
            "imageID": c.image_id,
            "problem": self.problem,
            "detail": self.detail,
        }


@dataclass
class Audit:
    """What ``deploy audit`` read and found."""

    registry: str
    namespaces: list[str]
    containers: list[RunningContainer] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class Expectations:
    """What a container should run: the registry, the release's image tag and the lock's pins.

    ``pins`` maps each locked image's name in the registry (``R/nats:2.9-alpine``) to its digest.
    """

    server: RegistryServer
    image_tag: str
    pins: Mapping[Reference, str] = field(default_factory=dict)

    @classmethod
    def from_lock(
        cls,
        server: RegistryServer,
        image_tag: str,
        entries: Iterable[LockEntry],
        held: Mapping[Reference, str] | None = None,
    ) -> Expectations:
        """Expectations pinning every locked image to the digest R holds for it (``held``: R's
        own index of each narrowed entry, as deploy pins it)."""
        return cls(server, image_tag, registry_pins(entries, server, held))


def ran_digest(image_id: str) -> str | None:
    """The manifest digest in a status ``imageID`` (``[docker-pullable://]name@sha256:...``).

    None for a bare ``sha256:...``: that is the image's config ID, not a manifest digest.
    """
    _, at, digest = image_id.rpartition("@")
    return digest if at and digest.startswith("sha256:") else None


def running_containers(pod: Obj, workload: str) -> Iterator[RunningContainer]:
    """Every container, init container and ephemeral container of ``pod`` with its imageID."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    for spec_field, status_field, kind in CONTAINER_KINDS:
        image_ids = {s.get("name"): s.get("imageID") or "" for s in status.get(status_field) or []}
        for container in spec.get(spec_field) or []:
            name = container.get("name", "")
            yield RunningContainer(
                meta.get("namespace", ""),
                meta["name"],
                workload,
                kind,
                name,
                str(container.get("image", "")),
                str(image_ids.get(name, "")),
            )


def check_container(
    container: RunningContainer, expect: Expectations, digest_in_registry: DigestLookup
) -> list[Finding]:
    """The findings for one container (none when it runs what the registry holds)."""
    if not is_under_registry(container.image, expect.server):
        return [
            Finding(
                container, NOT_FROM_REGISTRY, f"{container.image} is not under {expect.server}/"
            )
        ]
    ref = parse_reference(container.image)
    findings = []
    if ref.last_component in INJECTED_IMAGES and ref.tag and _older(ref.tag, expect.image_tag):
        findings.append(
            Finding(
                container,
                STALE_INJECTION,
                f"{ref.last_component}:{ref.tag} is older than the release's {expect.image_tag}:"
                f" re-roll {container.workload}",
            )
        )
    if not container.image_id:
        return [*findings, Finding(container, NOT_PULLED, "no imageID in the Pod's status yet")]
    ran = ran_digest(container.image_id)
    if ran is None:
        return findings
    tagged = ref.with_digest(None)
    if ref.tag:
        held = digest_in_registry(tagged)
        if held is None:
            findings.append(Finding(container, OTHER_DIGEST, f"{expect.server} has no {tagged}"))
        elif held != ran:
            findings.append(
                Finding(container, OTHER_DIGEST, f"ran {ran}, {expect.server} holds {held}")
            )
    pinned = expect.pins.get(tagged)
    if pinned and pinned != ran:
        findings.append(Finding(container, OTHER_DIGEST, f"ran {ran}, the lock pins {pinned}"))
    return findings


def _older(tag: str, release: str) -> bool:
    """Whether ``tag`` is an older version than ``release`` (or, not both versions, another)."""
    try:
        return _version(tag) < _version(release)
    except ValueError:
        return tag != release


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag.removeprefix("v").split("."))


class Owners:
    """A Pod's owning workload, followed through ReplicaSets (and Jobs to CronJobs)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._owners: dict[tuple[str, str, str], str] = {}

    def workload(self, pod: Obj) -> str:
        """``Kind/name`` of the controller at the top of the Pod's owners, else ``Pod/name``."""
        meta = pod["metadata"]
        owner = _controller(meta)
        if owner is None:
            return f"Pod/{meta['name']}"
        kind, name = owner
        if kind not in _OWNER_PARENTS:
            return f"{kind}/{name}"
        key = (meta.get("namespace", ""), kind, name)
        if key not in self._owners:
            parent = self.cluster.get(_OWNER_API[kind], kind, name, key[0])
            above = _controller(parent["metadata"]) if parent else None
            self._owners[key] = f"{above[0]}/{above[1]}" if above else f"{kind}/{name}"
        return self._owners[key]


def _controller(meta: Obj) -> tuple[str, str] | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["kind"]), str(ref["name"])
    return None


def audited_namespaces(cluster: Cluster, mesh_namespace: str) -> list[str]:
    """The mesh's namespace and every namespace labelled for injection."""
    labelled = cluster.list_objects("v1", "Namespace", label_selector=INJECT_SELECTOR)
    return sorted({mesh_namespace} | {ns["metadata"]["name"] for ns in labelled})


def audit(
    cluster: Cluster,
    namespaces: list[str] | None,
    expect: Expectations,
    digest_in_registry: DigestLookup,
) -> Audit:
    """Read every Pod of ``namespaces`` (None: all) and check each container against ``expect``."""
    if namespaces is None:
        pods = cluster.list_objects("v1", "Pod")
        namespaces = sorted({p["metadata"]["namespace"] for p in pods})
    else:
        pods = [p for ns in namespaces for p in cluster.list_objects("v1", "Pod", ns)]
    result = Audit(str(expect.server), namespaces)
    owners = Owners(cluster)
    digests: dict[Reference, str | None] = {}

    def cached(ref: Reference) -> str | None:
        if ref not in digests:
            digests[ref] = digest_in_registry(ref)
        return digests[ref]

    for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        for container in running_containers(pod, owners.workload(pod)):
            result.containers.append(container)
            result.findings.extend(check_container(container, expect, cached))
    return result


@contextmanager
def registry_digests(
    server: RegistryServer, credentials: Credentials | None, hosts: HostOptions
) -> Iterator[DigestLookup]:
    """``digest(ref)``: the digest the registry holds for ``ref`` (HEAD requests), or None."""
    from mirror.run import PrivateRegistry, open_registries

    with open_registries(hosts, PrivateRegistry(server, credentials)) as transport:

        def digest(ref: Reference) -> str | None:
            head = transport.head_manifest(ref)
            return head.digest if head else None

        yield digest
