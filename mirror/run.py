"""What every run shares: the jobs planned from a lock, the registries opened for them, the
threads that run them, and the guard that turns one copy's failure into its result."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from mirror.errors import InputError, Interrupted, MirrorError
from mirror.image.lock import ChartEntry, LockEntry, plan_destinations
from mirror.image.manifest import Platform
from mirror.image.reference import Reference, RegistryServer
from mirror.image.signature import VerifyKey, entry_keys
from mirror.net.auth import CredentialStore
from mirror.net.client import RegistryClient
from mirror.net.credentials import Credentials
from mirror.net.hosts import HostOptions
from mirror.net.retry import Cancellation, RetryPolicy
from mirror.report import ImageResult
from mirror.transports.registry import RegistryTransport

DEFAULT_JOBS = 4
#: Blobs of one image transferred at once.
BLOB_WORKERS = 4
#: After a signal, how long running copies get to wind down before the run stops anyway.
GRACE_SECONDS = 2.0
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class CopyJob:
    """One image to copy: where from, where to, and what the lock says about it."""

    source: Reference
    destination: Reference
    locked_digest: str | None = None
    platforms: tuple[Platform, ...] = ()
    verify_keys: tuple[VerifyKey, ...] = ()

    def __post_init__(self) -> None:
        if self.platforms and self.destination.tag is None:
            raise InputError(
                f"{self.source}: --platform needs a tag to name the narrowed index (its digest"
                " differs from the source's); write the lock entry as NAME:TAG@sha256:…"
            )


class CopyEvents(Protocol):
    """What the copy tells a progress display."""

    def started(self, job: CopyJob) -> None:
        """Work on the image began."""

    def sized(self, job: CopyJob, total: int) -> None:
        """The image's blobs add up to ``total`` bytes."""

    def advanced(self, job: CopyJob, nbytes: int) -> None:
        """``nbytes`` more bytes were transferred."""

    def placed(self, job: CopyJob, nbytes: int, how: str) -> None:
        """A blob of ``nbytes`` needed no transfer: ``how`` is ``mounted`` or ``present``."""

    def finished(self, job: CopyJob, result: ImageResult) -> None:
        """The image is done, one way or another."""


class Copier(Protocol):
    """A way to copy one image (the copy algorithm, or through a Docker daemon)."""

    def copy(self, job: CopyJob) -> ImageResult:
        """Copy ``job``; every failure but an interrupt is caught into the result."""


@dataclass
class CopyOptions:
    """Run-wide settings of the copy."""

    frozen: bool = False
    dry_run: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy.from_env)
    cancel: Cancellation = field(default_factory=Cancellation)
    attachments: bool = True
    verify_keys: tuple[VerifyKey, ...] = ()
    jobs: int = DEFAULT_JOBS


class NoEvents:
    """Copy events nobody shows (an attachment is covered by its image's progress line)."""

    def started(self, job: CopyJob) -> None:
        """Nothing to show."""

    def sized(self, job: CopyJob, total: int) -> None:
        """Nothing to show."""

    def advanced(self, job: CopyJob, nbytes: int) -> None:
        """Nothing to show."""

    def placed(self, job: CopyJob, nbytes: int, how: str) -> None:
        """Nothing to show."""

    def finished(self, job: CopyJob, result: ImageResult) -> None:
        """Nothing to show."""


@dataclass(frozen=True)
class Selection:
    """What a run copies: the locked images and charts, ``--platform`` narrowing the images."""

    entries: Sequence[LockEntry]
    charts: Sequence[ChartEntry] = ()
    platforms: Sequence[Platform] = ()


@dataclass(frozen=True)
class PrivateRegistry:
    """The private registry a run writes to (or reads from) and the credentials for it."""

    server: RegistryServer
    credentials: Credentials | None = None


def plan_jobs(
    entries: Sequence[LockEntry],
    server: RegistryServer | None,
    platforms: Sequence[Platform] = (),
) -> list[CopyJob]:
    """Copy jobs for lock entries, to ``server`` (None: each under its own name, as ``save``
    writes them); ``--platform`` overrides the lock's ``platforms``."""
    destinations = (
        plan_destinations(entries, server) if server else [(e, e.source) for e in entries]
    )
    return [
        CopyJob(
            entry.source, dest, entry.digest, tuple(platforms) or entry.platforms, entry_keys(entry)
        )
        for entry, dest in destinations
    ]


def registries_of(planned: Sequence[CopyJob], charts: dict[CopyJob, ChartEntry]) -> list[Reference]:
    """The references whose registries a run talks to (a chart repository is no registry)."""
    refs = [ref for job in planned for ref in (job.source, job.destination)]
    return refs + [ref for job, c in charts.items() for ref in (c.oci, job.destination) if ref]


def credential_store(hosts: HostOptions, registry: PrivateRegistry | None) -> CredentialStore:
    """The run's credentials: the private registry's own, else the auth file and helpers."""
    explicit = {}
    if registry is not None and registry.credentials is not None:
        explicit[registry.server.host] = registry.credentials
    return CredentialStore(explicit, hosts.auth_file)


def open_registries(
    hosts: HostOptions,
    registry: PrivateRegistry | None,
    policy: RetryPolicy | None = None,
    cancel: Cancellation | None = None,
    jobs: int = DEFAULT_JOBS,
) -> RegistryTransport:
    """One registry transport for both ends (shared tokens; a connection pool per registry
    sized for ``jobs`` images at once)."""
    store = credential_store(hosts, registry)
    client = RegistryClient(hosts, store, policy, cancel, transfers=jobs * BLOB_WORKERS)
    return RegistryTransport(client)


@contextlib.contextmanager
def guarded(job: CopyJob, events: CopyEvents) -> Iterator[ImageResult]:
    """The result of one copy, reported started and finished; any failure but an interrupt
    inside the block is caught into it (status ``failed``)."""
    result = ImageResult(str(job.source), str(job.destination))
    events.started(job)
    try:
        yield result
    except Interrupted:
        raise
    except MirrorError as exc:
        result.status, result.error = "failed", str(exc)
    except Exception as exc:  # a transport or daemon fault the retries gave up on
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
    events.finished(job, result)


def run_parallel(
    fn: Callable[[T], R], items: Sequence[T], workers: int, cancel: Cancellation, name: str
) -> list[R]:
    """``fn`` over ``items`` on up to ``workers`` threads; results in order, first error raised.

    Once ``cancel`` is set no item starts, running ones get GRACE_SECONDS to wind down, then
    Interrupted is raised. The threads are daemons, so one stuck in a network read cannot hold
    up an interrupted process.
    """
    todo = deque(enumerate(items))
    results: dict[int, R] = {}
    errors: dict[int, BaseException] = {}
    running = min(max(1, workers), len(todo))
    if not running:
        return []
    lock, done = threading.Lock(), threading.Event()

    def work() -> None:
        nonlocal running
        while not cancel.requested:
            try:
                index, item = todo.popleft()
            except IndexError:
                break
            try:
                results[index] = fn(item)
            except BaseException as exc:
                errors[index] = exc
        with lock:
            running -= 1
            if running == 0:
                done.set()

    context = contextvars.copy_context()
    for number in range(running):
        thread = threading.Thread(
            target=context.copy().run, args=(work,), name=f"{name}-{number}", daemon=True
        )
        thread.start()
    while not done.wait(0.1):
        if cancel.requested:
            done.wait(GRACE_SECONDS)
            break
    cancel.check()
    if errors:
        raise errors[min(errors)]
    return [results[index] for index in range(len(items))]


def in_background(fn: Callable[[], R]) -> Callable[[], R]:
    """``fn`` started now on a thread of its own (in the caller's context); the call returned
    waits for it and gives its result, or raises its error."""
    outcome: list[R] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()

    def result() -> R:
        thread.join()
        if failure:
            raise failure[0]
        return outcome[0]

    return result


def run_copies(
    jobs: Sequence[CopyJob], copier: Copier, workers: int, cancel: Cancellation
) -> list[ImageResult]:
    """Copy ``jobs`` with ``workers`` images at once; results in job order."""
    return run_parallel(copier.copy, jobs, workers, cancel, "image")
