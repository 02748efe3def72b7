"""The registry transport: the OCI distribution API, as source and destination, over the
registry client of ``mirror.net.client``."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx

from mirror.errors import (
    DigestMismatch,
    HostileContent,
    InputError,
    NotARegistry,
    NotFound,
    RegistryError,
    RepositoryMissing,
)
from mirror.image import mediatypes
from mirror.image.digest import sha256_digest, verify_bytes
from mirror.image.manifest import MAX_MANIFEST_BYTES, Descriptor, Manifest, parse_manifest
from mirror.image.reference import Reference
from mirror.net.client import REDIRECTS, RegistryClient, raw_chunks, release
from mirror.net.retry import retrying

log = logging.getLogger("mirror.registry")

#: How registries refuse a cross-repository mount (no pull on ``from``, not supported, …).
_MOUNT_REFUSALS = (400, 401, 403, 404, 405)
#: A chunked upload's piece: within nginx's default request size limit (1 MiB).
_PIECE_BYTES = 1024 * 1024
#: How registries without the referrers API answer it.
_NO_REFERRERS_API = (400, 404)
#: How registries refuse a tags listing (not allowed here, no such API, a parameter refused).
_LISTING_REFUSALS = (400, 401, 403, 404, 405)
#: Tags asked for per page of a listing; a registry may send fewer, with a ``Link`` to the rest.
TAGS_PER_PAGE = 1000
#: The longest page of a listing read (a registry that ignores ``n`` sends every tag at once).
MAX_LISTING_BYTES = 8 * 1024 * 1024
_RANGE_RE = re.compile(r"(?:bytes=)?0-(\d+)")


def _hashes_to(data: bytes, digest: str) -> bool:
    try:
        verify_bytes(data, digest)
    except (DigestMismatch, InputError):
        return False
    return True


def _pieces(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The stream cut into pieces of ``size`` bytes (the last one shorter, none if empty)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _tag_names(raw: bytes) -> list[str] | None:
    """The ``tags`` of a listing page (``null`` is none), or None if the page is no listing."""
    try:
        tags = json.loads(raw).get("tags") or []
    except (ValueError, AttributeError):
        return None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return None
    return tags


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


class RegistryTransport:
    """Images in registries, read and written through the distribution API."""

    name = "registry"

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._sessions: dict[tuple[str, str], httpx.URL] = {}  # uploads mounts opened instead
        self._chunked: set[str] = set()  # hosts that refused a blob in one PUT (413)
        self._referrers_api: dict[str, bool] = {}  # per host: whether it serves the API
        self._asking_referrers = threading.Lock()  # so each host is asked once per run
        self._missing: set[str] = set()  # repositories a push found missing (ECR: 404)
        self._reads: Callable[[str], str] = _pull  # the scope of manifest and tag reads

    def pushing(self) -> RegistryTransport:
        """This transport as a copy's destination (same client and state): manifest and tag
        reads ask for the push token the writes need, as skopeo and containerd do for a push
        target, so a repository's tag check, mounts and uploads share one token."""
        view = copy.copy(self)
        view._reads = _push
        return view

    def __enter__(self) -> RegistryTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def ping(self, refs: Iterable[Reference]) -> None:
        """Raise NotARegistry if the registry of any of ``refs`` answers ``HEAD /v2/`` like a web
        server, not a registry.

        Only a clear answer counts (404, or an HTML page); unreachable hosts and other answers
        are left to the requests that need them, so one bad source does not stop a run. The
        hosts are asked at once: over a WAN each question costs a round trip or more.
        """
        hosts = list(dict.fromkeys(ref.registry for ref in refs))
        with ThreadPoolExecutor(max(1, len(hosts)), thread_name_prefix="ping") as pool:
            answers = list(pool.map(lambda host: self.client.probe(host, "/v2/"), hosts))
        for host, response in zip(hosts, answers, strict=True):
            if response is None:
                continue
            status = response.status_code
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if status == 404 or (kind == "text/html" and status in (200, 401, 403)):
                shown = f"HTTP {status} {kind}".strip()
                raise NotARegistry(
                    f"{host}: {response.url} is not a container registry"
                    f" (HEAD /v2/ answered {shown}); check --registry-server and --endpoint"
                )

    def _repo(self, ref: Reference) -> str:
        return self.client.endpoint(ref.registry).repository(ref.repository)

    def _url(self, ref: Reference, kind: str, tail: str) -> str:
        return f"/v2/{self._repo(ref)}/{kind}/{tail}"

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """Digest, media type and size of a tag or digest, or None if it does not exist."""
        target = ref.digest or ref.tag or "latest"
        headers = {"Accept": mediatypes.ACCEPT_MANIFESTS}
        url = self._url(ref, "manifests", target)
        try:
            response = self.client.request(
                "HEAD", ref, url, [self._reads(self._repo(ref))], headers=headers
            )
        except NotFound:
            return None
        release(response)
        digest = response.headers.get("docker-content-digest") or ref.digest
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        size = int(response.headers.get("content-length") or 0)
        if not digest:
            manifest = self.get_manifest(ref, None)
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        return Descriptor(media_type, digest, size)

    def get_manifest(self, ref: Reference, digest: str | None) -> Manifest:
        """Fetch a manifest (by digest when given) and verify it hashes to that digest."""
        target = digest or ref.digest or ref.tag or "latest"
        headers = {"Accept": mediatypes.ACCEPT_MANIFESTS}
        url = self._url(ref, "manifests", target)
        scopes = [self._reads(self._repo(ref))]
        response, raw = self.client.fetch(
            ref, url, scopes, headers=headers, limit=MAX_MANIFEST_BYTES, what="manifest"
        )
        actual = sha256_digest(raw)
        claimed = response.headers.get("docker-content-digest")
        expected = digest or ref.digest or claimed or actual
        for wanted in dict.fromkeys(d for d in (expected, claimed) if d):
            if not _hashes_to(raw, wanted):
                raise DigestMismatch(
                    f"{ref}: manifest digest mismatch: expected {wanted}, got {actual}"
                )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return parse_manifest(raw, media_type, expected)

    def serves_referrers(self, ref: Reference, digest: str) -> bool:
        """Whether ``ref``'s registry has the referrers API, asked once per registry per run
        with a HEAD on ``digest``'s referrers (so a registry without it costs no GET; 404, as
        docker-registry 2.8 answers, or 400 means no). Images asking at once wait for it."""
        serves = self._referrers_api.get(ref.registry)
        if serves is not None:
            return serves
        with self._asking_referrers:
            serves = self._referrers_api.get(ref.registry)
            if serves is None:
                serves = self._answers_referrers(ref, digest)
                self._referrers_api[ref.registry] = serves
        return serves

    def _answers_referrers(self, ref: Reference, digest: str) -> bool:
        url, scopes = self._url(ref, "referrers", digest), [self._reads(self._repo(ref))]
        try:
            release(self.client.request("HEAD", ref, url, scopes, ok=(200, 405)))
        except RegistryError as exc:
            if exc.status not in _NO_REFERRERS_API:
                raise
            return False
        return True

    def referrers(self, ref: Reference, digest: str) -> Manifest | None:
        """The referrers API's index of ``digest``'s referrers, or None where the registry has
        no such API."""
        if not self.serves_referrers(ref, digest):
            return None
        url, scopes = self._url(ref, "referrers", digest), [self._reads(self._repo(ref))]
        accept = {"Accept": mediatypes.OCI_INDEX}
        _, raw = self.client.fetch(
            ref, url, scopes, headers=accept, limit=MAX_MANIFEST_BYTES, what="referrers index"
        )
        return parse_manifest(raw, mediatypes.OCI_INDEX, sha256_digest(raw))

    def tags(self, ref: Reference, pages: int) -> frozenset[str] | None:
        """Every tag of ``ref``'s repository, page by page (``n``, then the ``Link`` header's
        ``last``); None where the registry refuses the listing (401, 403, 404, 405 or 400), sends
        something else, or has more than ``pages`` pages."""
        scopes = [self._reads(self._repo(ref))]
        url = f"{self._url(ref, 'tags', 'list')}?n={TAGS_PER_PAGE}"
        found: set[str] = set()
        for _ in range(pages):
            try:
                response, raw = self.client.fetch(
                    ref, url, scopes, headers={}, limit=MAX_LISTING_BYTES, what="tags listing"
                )
            except HostileContent:
                return None
            except RegistryError as exc:
                if exc.status not in _LISTING_REFUSALS:
                    raise
                log.debug("%s: tags listing refused (HTTP %s)", ref, exc.status)
                return None
            names = _tag_names(raw)
            if names is None:
                return None
            found.update(names)
            following = response.links.get("next", {}).get("url")
            if not following:
                return frozenset(found)
            url = str(response.url.join(following))
        log.debug("%s: more than %d pages of tags; looking each attachment tag up", ref, pages)
        return None

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """Stream a blob's bytes (unverified: the copy verifies), following redirects."""
        url = self._url(ref, "blobs", desc.digest)
        response = self.client.open(ref, url, [_pull(self._repo(ref))])
        claimed = response.headers.get("docker-content-digest")
        if claimed and claimed != desc.digest:
            response.close()
            raise DigestMismatch(
                f"{ref}: blob digest mismatch: asked for {desc.digest},"
                f" the registry says it sent {claimed}"
            )
        try:
            yield raw_chunks(response, ref.registry, f"GET {url}")
        finally:
            response.close()

    def has_blob(self, ref: Reference, desc: Descriptor) -> bool:
        """Whether the repository already holds the blob (HEAD; a redirect to storage: yes)."""
        url = self._url(ref, "blobs", desc.digest)
        repo = self._repo(ref)
        try:
            release(self.client.request("HEAD", ref, url, [_push(repo)], ok=(200, *REDIRECTS)))
        except NotFound:
            return False
        session = self._sessions.pop((repo, desc.digest), None)
        if session is not None:  # a mount opened an upload that is not needed after all
            with contextlib.suppress(RegistryError, httpx.HTTPError):
                deleted = self.client.request(
                    "DELETE", ref, str(session), [_push(repo)], ok=(204, 404)
                )
                release(deleted)
        return True

    def mount_blob(self, ref: Reference, desc: Descriptor, source: Reference) -> bool:
        """Cross-repository mount from ``source`` (same registry); False if not mounted.

        A refused mount only means the blob is uploaded; an upload the registry opened instead
        of mounting is the one put_blob fills. With ``source`` in ``ref``'s own repository, the
        mount says whether the repository holds the blob, and opens its upload if not.
        """
        repo, other = self._repo(ref), self._repo(source)
        url = f"/v2/{repo}/blobs/uploads/"
        scopes = [_push(repo)] if other == repo else [_push(repo), _pull(other)]
        try:
            response = self.client.request(
                "POST",
                ref,
                url,
                scopes,
                params={"mount": desc.digest, "from": other},
                ok=(201, 202),
            )
        except RegistryError as exc:
            if exc.status not in _MOUNT_REFUSALS:
                raise
            log.debug(
                "%s: mount of %s from %s refused (HTTP %s)", ref, desc.digest, other, exc.status
            )
            return False
        release(response)
        location = response.headers.get("location")
        if response.status_code == 202 and location:
            self._sessions[(repo, desc.digest)] = response.url.join(location)
        return response.status_code == 201

    def put_blob(self, ref: Reference, desc: Descriptor, chunks: Iterable[bytes]) -> None:
        """Upload a blob in one streamed PUT; where the registry refused that (413), in PATCHes
        of 1 MiB and a PUT of the last piece. The registry checks the digest too.

        A refused PUT, or an upload the registry dropped, is a retryable error: the caller
        starts the blob again from its source.
        """
        repo, size = self._repo(ref), desc.size
        target = self._sessions.pop((repo, desc.digest), None) or self._start_upload(ref)
        try:
            if ref.registry in self._chunked:
                target, last = self._patch_all_but_last(ref, target, chunks)
                chunks, size = [last], len(last)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            done = self.client.request(
                "PUT",
                ref,
                str(target.copy_merge_params({"digest": desc.digest})),
                [_push(repo)],
                headers=headers,
                content=iter(chunks),
                ok=(201,),
            )
        except NotFound as exc:
            raise RegistryError(f"{exc} (the upload was dropped)", 404, retryable=True) from None
        except RegistryError as exc:
            if exc.status != 413 or ref.registry in self._chunked:
                raise
            self._chunked.add(ref.registry)
            raise RegistryError(f"{exc} (sending it in chunks)", 413, retryable=True) from None
        release(done)

    def _patch_all_but_last(
        self, ref: Reference, session: httpx.URL, chunks: Iterable[bytes]
    ) -> tuple[httpx.URL, bytes]:
        """PATCH every piece of a blob but the last; return the URL to PUT that one to."""
        held, pending = 0, b""
        for piece in _pieces(chunks, _PIECE_BYTES):
            if pending:
                session = self._patch(ref, session, pending, held)
                held += len(pending)
            pending = piece
        return session, pending

    def _patch(self, ref: Reference, session: httpx.URL, piece: bytes, start: int) -> httpx.URL:
        """PATCH ``piece`` at offset ``start`` (Content-Range); after a fault, resume from the
        Range the registry says it holds. Returns the upload's next URL."""
        scopes, end = [_push(self._repo(ref))], start + len(piece)
        held = start
        for attempt in retrying(self.client.policy, f"PATCH {session.path}", self.client.cancel):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    session, held = self._upload_status(ref, session)
                    if not start <= held <= end:
                        raise RegistryError(
                            f"{ref}: upload holds {held} bytes, expected {start} to {end}"
                        )
                if held < end:
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{held}-{end - 1}",
                        "Content-Length": str(end - held),
                    }
                    response = self.client.request(
                        "PATCH",
                        ref,
                        str(session),
                        scopes,
                        headers=headers,
                        content=iter([piece[held - start :]]),  # not replayed blindly: resumed
                        ok=(202,),
                    )
                    release(response)
                    session = response.url.join(response.headers.get("location", ""))
                return session
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises

    def _upload_status(self, ref: Reference, session: httpx.URL) -> tuple[httpx.URL, int]:
        """An upload's URL and how many bytes the registry holds (its ``Range`` answer)."""
        response = self.client.request(
            "GET", ref, str(session), [_push(self._repo(ref))], ok=(200, 204)
        )
        release(response)
        match = _RANGE_RE.fullmatch(response.headers.get("range", "").strip())
        last = int(match[1]) if match else -1
        # distribution answers 0-0 for an empty upload as for a one-byte one
        held = last + 1 if last > 0 else 0
        return response.url.join(response.headers.get("location", "")), held

    def _start_upload(self, ref: Reference) -> httpx.URL:
        """A new upload session's URL; RepositoryMissing where the registry answers 404, as
        one that does not create repositories on push does (Amazon ECR: NAME_UNKNOWN)."""
        repo = self._repo(ref)
        missing = f"repository {ref.registry}/{repo} does not exist: create it first"
        if f"{ref.registry}/{repo}" in self._missing:
            raise RepositoryMissing(missing)
        try:
            start = self.client.request(
                "POST", ref, f"/v2/{repo}/blobs/uploads/", [_push(repo)], ok=(202,)
            )
        except NotFound:
            self._missing.add(f"{ref.registry}/{repo}")
            raise RepositoryMissing(missing) from None
        release(start)
        location = start.headers.get("location")
        if not location:
            raise RegistryError(f"{ref}: registry started an upload without a Location")
        return start.url.join(location)

    def put_manifest(self, ref: Reference, manifest: Manifest, tag: str | None) -> None:
        """Upload raw manifest bytes by digest, then under ``tag`` when given.

        Each answer's ``Docker-Content-Digest`` must be the manifest's, so a registry that
        stores something else fails the image before the tag is written.
        """
        for target in [manifest.digest, *([tag] if tag else [])]:
            done = self.client.request(
                "PUT",
                ref,
                self._url(ref, "manifests", target),
                [_push(self._repo(ref))],
                headers={"Content-Type": manifest.media_type},
                content=manifest.raw,
                ok=(201, 200),
            )
            release(done)
            stored = done.headers.get("docker-content-digest")
            if stored and stored != manifest.digest:
                raise DigestMismatch(
                    f"{ref}: manifest digest mismatch: pushed {manifest.digest},"
                    f" the registry says it stored {stored}"
                )
