"""Copies the Docker daemon performs itself: ``sync --engine docker``, ``load --to-docker``,
and ``save --from-docker`` (which is the one copy algorithm reading a daemon source).

``sync --engine docker`` is :class:`DaemonPullPushCopier`, not an ImageSource/ImageDestination
pair. Those protocols move blobs through this process and put manifests byte for byte, while
the point of this engine is that the daemon moves the bytes itself (through its proxy and
registry mirrors): it pulls the image, and on push re-encodes the manifest (OCI to Docker v2
schema 2) and recompresses the layers. Neither end can honestly be written as blob reads and
writes whose digests we verify. So it keeps the copier's contract instead (:class:`~mirror.run.
Copier`): ``copy(job)`` never raises for one image, reports through the same events, fills the
same :class:`~mirror.report.ImageResult` (``source_digest`` the source manifest, ``digest`` the
one the daemon pushed) and retries with :func:`~mirror.net.retry.retrying`.

``load --to-docker`` (:class:`DaemonLoadCopier`) streams each image of a layout into ``docker
load`` (:func:`~mirror.transports.dockerarchive.load_stream`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from mirror.airgap import LoadPlan, SaveTarget, write_layout
from mirror.copy import check_drift, config_platform_of, platform_refusal, skip_for_platform
from mirror.errors import InputError, MirrorError, NotFound, RegistryError
from mirror.image.lock import LockEntry
from mirror.image.manifest import Manifest, Platform, platform_matches
from mirror.image.reference import Reference
from mirror.net.auth import CredentialStore
from mirror.net.hosts import HostOptions
from mirror.net.retry import retries_reported_to, retrying
from mirror.report import ImageResult, Report
from mirror.run import (
    CopyEvents,
    CopyJob,
    CopyOptions,
    PrivateRegistry,
    Selection,
    credential_store,
    guarded,
    plan_jobs,
    run_copies,
)
from mirror.transports.base import ImageSource
from mirror.transports.daemon import (
    Daemon,
    DaemonSource,
    auth_config,
    check_message,
    connect,
    pull_repository,
    pull_server,
    reported,
)
from mirror.transports.dockerarchive import load_stream

T = TypeVar("T")
REENCODED = (
    "the daemon re-encodes manifests (Docker v2 schema 2, recompressed layers):"
    " destination digest {digest} differs from the source's {source}"
)


@dataclass
class PushProgress:
    """What a push stream said: bytes per layer, how each layer got there, the digest."""

    current: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    uploaded: set[str] = field(default_factory=set)
    mounted: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    digest: str | None = None

    def update(self, message: dict[str, Any]) -> int:
        """Take one message; return how many more bytes were pushed."""
        status, layer = str(message.get("status", "")), str(message.get("id", ""))
        detail = message.get("progressDetail") or {}
        aux = message.get("aux") or {}
        if isinstance(aux, dict) and aux.get("Digest"):
            self.digest = str(aux["Digest"])
        if status == "Pushing" and "current" in detail:
            total = int(detail.get("total") or 0)
            now = min(int(detail["current"]), total) if total else int(detail["current"])
            before = self.current.get(layer, 0)
            self.current[layer], self.total[layer] = max(now, before), total
            return max(0, now - before)
        if status == "Pushed":
            self.uploaded.add(layer)
        elif status == "Layer already exists":
            self.present.add(layer)
        elif status.startswith("Mounted from"):
            self.mounted.add(layer)
        return 0

    @property
    def bytes_uploaded(self) -> int:
        """Layer bytes the daemon read for the layers it uploaded (before compression)."""
        return sum(self.total.get(layer) or self.current.get(layer, 0) for layer in self.uploaded)


class LocalNames:
    """Local image names the run uses, counted across concurrent images.

    A name that did not exist before the run is removed when its last user releases it; a
    name the user already had is never removed.
    """

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._ours: set[str] = set()

    def acquire(self, name: str) -> None:
        """Start using ``name`` (before it is pulled or tagged)."""
        with self._lock:
            if not self._users.get(name) and self._daemon.image_id(name) is None:
                self._ours.add(name)
            self._users[name] = self._users.get(name, 0) + 1

    def release(self, name: str) -> str | None:
        """Stop using ``name``; remove it if this run created it and nobody else uses it."""
        with self._lock:
            self._users[name] -= 1
            if self._users[name] or name not in self._ours:
                return None
            self._ours.discard(name)
            return self._daemon.remove(name)


@dataclass
class DaemonPullPushCopier:
    """``sync``'s copy through a Docker daemon: pull, tag, push, untag (see the module doc)."""

    daemon: Daemon
    hosts: HostOptions
    credentials: CredentialStore
    events: CopyEvents
    options: CopyOptions
    keep: bool = False
    names: LocalNames = field(init=False)

    def __post_init__(self) -> None:
        self.names = LocalNames(self.daemon)

    def copy(self, job: CopyJob) -> ImageResult:
        """Copy one image; every failure is caught into the result (status ``failed``)."""
        held: list[str] = []
        with guarded(job, self.events) as result:
            try:
                self._copy(job, result, held)
            finally:
                for name in reversed(held):
                    problem = self.names.release(name)
                    if problem:
                        result.notes.append(problem)
        return result

    def _retry(self, result: ImageResult, what: str, action: Callable[[], T]) -> T:
        def count(_: BaseException) -> None:
            result.retries += 1

        with retries_reported_to(count):
            for attempt in retrying(self.options.policy, what, self.options.cancel):
                with attempt:
                    return action()
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises

    def _source_auth(self, job: CopyJob) -> dict[str, str]:
        """The credentials for the host the daemon pulls the source from."""
        server = pull_server(job.source, self.hosts)
        return auth_config(self.credentials, job.source.registry, server)

    def _distribution(self, name: str, auth: dict[str, str]) -> dict[str, Any] | None:
        """What the registry says ``name`` is (asked through the daemon), or None if absent."""
        try:
            with reported(name):
                return dict(self.daemon.api.inspect_distribution(name, auth_config=auth))
        except NotFound:
            return None

    def _copy(self, job: CopyJob, result: ImageResult, held: list[str]) -> None:
        if job.destination.tag is None:
            raise InputError(f"{job.source}: the daemon pushes tags only; lock it with a tag")
        repo = pull_repository(job.source, self.hosts)
        head, wanted = self._resolve(job, repo, result)
        destination = f"{job.destination.name}:{job.destination.tag}"
        dest_auth = auth_config(self.credentials, job.destination.registry)
        before = self._retry(
            result, f"inspect {destination}", lambda: self._distribution(destination, dest_auth)
        )
        before_digest = (before or {}).get("Descriptor", {}).get("digest")
        platform = str(job.platforms[0]) if job.platforms else None
        if self.options.dry_run:
            result.status = "skipped"
            result.notes.append(
                f"would pull {repo}@{wanted} ({platform or self.daemon.platform}) through the"
                f" daemon at {self.daemon.address} and push it as {destination}"
                + (f" (which now holds {before_digest})" if before_digest else "")
            )
            return
        image = self._pull(job, f"{repo}@{wanted}", platform, result, held)
        if job.platforms:  # the daemon pulls a single-platform image whatever it is
            pulled = Platform(
                str(image.get("Os")), str(image.get("Architecture")), image.get("Variant")
            )
            if skip_for_platform(
                platform_refusal(job, wanted, pulled), result, self.options.frozen
            ):
                return
        self.names.acquire(destination)
        held.append(destination)
        self.daemon.api.tag(image["Id"], job.destination.name, job.destination.tag)
        self.events.sized(job, int(image.get("Size") or 0))
        pushed = self._retry(result, f"push {destination}", lambda: self._push(job, dest_auth))
        if self.keep and job.source.tag:
            self.daemon.api.tag(image["Id"], job.source.name, job.source.tag)
        result.digest = pushed.digest
        result.status = "present" if pushed.digest == before_digest else "copied"
        result.bytes_uploaded = pushed.bytes_uploaded
        result.blobs_uploaded = len(pushed.uploaded)
        result.blobs_mounted = len(pushed.mounted)
        result.blobs_present = len(pushed.present)
        result.notes += _changes(image, head, wanted, pushed.digest)

    def _resolve(
        self, job: CopyJob, repo: str, result: ImageResult
    ) -> tuple[dict[str, Any] | None, str]:
        """What the source tag points to (through the daemon) and the digest to copy."""
        auth = self._source_auth(job)
        target = f"{repo}:{job.source.tag}" if job.source.tag else f"{repo}@{job.source.digest}"
        head = self._retry(result, f"inspect {target}", lambda: self._distribution(target, auth))
        current = (head or {}).get("Descriptor", {}).get("digest")
        if current is None and job.locked_digest is None:
            raise NotFound(f"{job.source}: not found at the source")
        result.source_digest = current or job.locked_digest
        check_drift(job, current, result, self.options.frozen)
        return head, str(job.locked_digest or current)

    def _pull(
        self, job: CopyJob, pulled: str, platform: str | None, result: ImageResult, held: list[str]
    ) -> dict[str, Any]:
        """Have the daemon pull ``pulled`` (``repo@digest``); the local image's inspect data."""
        auth = self._source_auth(job)
        self.names.acquire(pulled)
        held.append(pulled)

        def pull() -> None:
            with reported(pulled):
                stream = self.daemon.api.pull(
                    pulled, platform=platform, auth_config=auth, stream=True, decode=True
                )
                for message in stream:
                    self.options.cancel.check()
                    check_message(message, str(job.source))

        self._retry(result, f"pull {pulled}", pull)
        return dict(self.daemon.api.inspect_image(pulled))

    def _push(self, job: CopyJob, auth: dict[str, str]) -> PushProgress:
        """Have the daemon push the destination tag, following its progress."""
        destination = str(job.destination)
        progress = PushProgress()
        with reported(destination):
            stream = self.daemon.api.push(
                job.destination.name,
                tag=job.destination.tag,
                auth_config=auth,
                stream=True,
                decode=True,
            )
            for message in stream:
                self.options.cancel.check()
                check_message(message, destination)
                self.events.advanced(job, progress.update(message))
        if progress.digest is None:
            raise RegistryError(f"{destination}: the daemon did not report a pushed digest")
        return progress


def _changes(
    image: dict[str, Any], head: dict[str, Any] | None, source: str, pushed: str | None
) -> list[str]:
    """What the daemon changed (manifest digest, platforms) and the image ID it kept."""
    notes = [f"image ID {image['Id']}"]
    if pushed != source:
        notes.append(REENCODED.format(digest=pushed, source=source))
    platforms = (head or {}).get("Platforms") or []
    if len(platforms) > 1:
        variant = f"/{image['Variant']}" if image.get("Variant") else ""
        notes.append(
            f"multi-platform source ({len(platforms)} platforms) became single-platform"
            f" {image.get('Os')}/{image.get('Architecture')}{variant}"
        )
    return notes


def sync_through_daemon(
    selection: Selection,
    destination: PrivateRegistry,
    hosts: HostOptions,
    events: CopyEvents,
    options: CopyOptions,
    *,
    docker_host: str | None = None,
    keep: bool = False,
) -> Report:
    """``sync --engine docker``: every entry pulled and pushed by the daemon (charts are not:
    a daemon holds images only)."""
    platforms, jobs = selection.platforms, options.jobs
    if hosts.ca_file or hosts.insecure:
        raise InputError(
            "--ca-file and --insecure-registry do not apply to --engine docker: the daemon"
            " uses its own (insecure-registries in daemon.json, /etc/docker/certs.d)"
        )
    if len(platforms) > 1:
        raise InputError("--engine docker copies one platform per image: give one --platform")
    planned = plan_jobs(selection.entries, destination.server, platforms)
    credentials = credential_store(hosts, destination)
    started = time.monotonic()
    with connect(docker_host, jobs) as daemon:
        engine = DaemonPullPushCopier(daemon, hosts, credentials, events, options, keep)
        results = run_copies(planned, engine, jobs, options.cancel)
    command = "sync --engine docker" + (" --dry-run" if options.dry_run else "")
    return Report(command, results, time.monotonic() - started)


def select_image(
    source: ImageSource, ref: Reference, top: Manifest, platform: Platform
) -> Manifest:
    """The image manifest of ``top`` for ``platform`` (``top`` itself if it is one)."""
    while top.is_index:
        child = next((c for c in top.children if platform_matches(platform, c.platform)), None)
        if child is None:
            raise NotFound(f"{ref}: {top.digest} has no image for platform {platform}")
        top = source.get_manifest(ref, child.digest)
    return top


@dataclass
class DaemonLoadCopier:
    """Images of an image source (an archive) loaded into the daemon with ``docker load``."""

    daemon: Daemon
    source: ImageSource
    events: CopyEvents
    options: CopyOptions
    tags: Callable[[CopyJob], Sequence[Reference]]

    def copy(self, job: CopyJob) -> ImageResult:
        """Load one image under its tags; every failure is caught into the result."""
        with guarded(job, self.events) as result:
            self._load(job, result)
        return result

    def _load(self, job: CopyJob, result: ImageResult) -> None:
        top = self.source.get_manifest(job.source, job.locked_digest)
        platform = job.platforms[0] if job.platforms else self.daemon.platform
        image = select_image(self.source, job.source, top, platform)
        if job.platforms and not top.is_index:
            have = config_platform_of(self.source, job, image)
            if skip_for_platform(platform_refusal(job, top.digest, have), result, False):
                result.source_digest = top.digest
                return
        if image.config is None:
            raise MirrorError(f"{job.source}: {image.digest} has no config")
        image_id = image.config.digest
        tags = [str(t) for t in self.tags(job)]
        result.source_digest, result.digest = top.digest, image_id
        result.notes.append(f"image ID {image_id}; tags {', '.join(tags) or '(none)'}")
        if top.is_index:
            result.notes.append(f"multi-platform source: loaded {platform} only")
        if tags and all(self.daemon.image_id(t) == image_id for t in tags):
            result.status = "present"
            return
        blobs = {d.digest: d for d in (image.config, *image.layers)}.values()
        self.events.sized(job, sum(d.size for d in blobs))

        def advanced(nbytes: int) -> None:
            self.options.cancel.check()
            result.bytes_uploaded += nbytes
            self.events.advanced(job, nbytes)

        stream = load_stream(self.source, job.source, image, tags, advanced)
        with reported(f"{job.source}: docker load"):
            for message in self.daemon.api.load_image(stream, quiet=True):
                check_message(message, f"{job.source}: docker load")
        loaded = self.daemon.image_id(tags[0] if tags else image_id)
        if loaded != image_id:
            raise MirrorError(f"{job.source}: the daemon holds {loaded}, expected {image_id}")
        result.status, result.blobs_uploaded = "copied", len(blobs)


def load_into_daemon(
    plan: LoadPlan,
    events: CopyEvents,
    options: CopyOptions,
    docker_host: str | None = None,
) -> Report:
    """``load --to-docker``: each planned image loaded under its source and destination names."""
    jobs = options.jobs

    def tags(job: CopyJob) -> list[Reference]:
        return [name for name in dict.fromkeys([job.source, job.destination]) if name.tag]

    results = plan.refusals(events)
    todo = plan.todo
    started = time.monotonic()
    with connect(docker_host, jobs) as daemon:
        loader = DaemonLoadCopier(daemon, plan.layout, events, options, tags)
        loaded = run_copies(todo, loader, jobs, options.cancel)
        results.update(zip(todo, loaded, strict=True))
    report = [results[job] for job in plan.jobs]
    return Report("load --to-docker", report, time.monotonic() - started)


def save_from_daemon(
    entries: Sequence[LockEntry],
    target: SaveTarget,
    events: CopyEvents,
    options: CopyOptions,
    docker_host: str | None = None,
) -> Report:
    """``save --from-docker``: the daemon's images copied into the layout, as ``save`` does.

    The lock written into the archive pins each image to the manifest built for it.
    """
    # The archive's lock pins each image to the manifest built for it, not the lock's digest.
    unpinned = [replace(e, digest=None, platforms=(), verify_key=None) for e in entries]
    planned = plan_jobs(unpinned, None)
    with connect(docker_host, options.jobs) as daemon, DaemonSource(daemon) as source:
        command = "save --from-docker"
        return write_layout(source, unpinned, planned, target, events, options, None, command)
