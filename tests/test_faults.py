"""Registries that fail, throttle and lie, behind a fault-injecting proxy (issue 8).

Every test runs ``mirror sync`` as a user would, with the source images (and often the
destination) reached through :class:`tests.faultproxy.FaultProxy` in front of real registries.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.faultproxy import FaultProxy, ProxyFactory
from tests.imagefactory import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    Index,
    make_image,
    make_index,
    make_layer,
    push,
    registry_client,
    sha256,
)
from tests.mirrorcli import PublicImages, report_of, run_mirror, start_mirror
from tests.registries import Registry

#: Fast backoff, so retried faults cost milliseconds.
FAST = {"MESHLIFT_RETRY_INITIAL_WAIT": "0.01", "MESHLIFT_RETRY_MAX_WAIT": "0.05"}
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
ALPHA, BETA, GAMMA = "quay.io/faults/alpha:1", "quay.io/faults/beta:2", "ghcr.io/faults/gamma:3"


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    """An image with three own layers, a two-platform index and a small image, sharing a base."""
    images = PublicImages(anon_registry, f"faults-{uuid.uuid4().hex[:8]}")
    base = [make_layer("faults-base", 40_000)]
    images.add(ALPHA, make_image("faults-alpha", [60_000, 30_000, 20_000], base=base))
    beta = [
        make_image("faults-beta-amd64", [50_000], base=base),
        make_image("faults-beta-arm64", [45_000], base=base, platform=("linux", "arm64")),
    ]
    images.add(BETA, make_index(beta))
    images.add(GAMMA, make_image("faults-gamma", [10_000], base=base, fmt="docker"))
    return images


@dataclass
class Setup:
    """Public images behind ``source``; destination ``registry``/``prefix`` behind ``dest``."""

    public: PublicImages
    source: FaultProxy
    dest: FaultProxy
    registry: Registry
    prefix: str
    lock: Path

    def sync(
        self, *extra: str, env: dict[str, str] | None = None, debug: bool = False
    ) -> tuple[int, dict[str, Any], str]:
        """``mirror sync --output json`` through both proxies: (exit code, report, stderr)."""
        debugging = ["--debug"] if debug else []
        command = [*debugging, *self.args(), "--output", "json", *extra]
        result = run_mirror(*command, env={**FAST, **(env or {})})
        report = report_of(result) if result.stdout.strip() else {}
        return result.returncode, report, result.stderr

    def args(self) -> list[str]:
        """The sync command line (without extra options)."""
        endpoints = [
            a.replace(self.public.registry.url, self.source.url)
            for a in self.public.endpoint_args()
        ]
        server = f"{self.dest.host}/{self.prefix}"
        return ["sync", "--lock", str(self.lock), "--registry-server", server, *endpoints]

    def digest(self, source: str) -> str | None:
        """The digest the destination tag for ``source`` points to (None if untagged)."""
        with registry_client(self.registry) as client:
            return tag_digest(client, self.prefix, source)

    def assert_mirrored(self, *sources: str) -> None:
        """Each source's destination tag has the source digest, with every child and blob."""
        with registry_client(self.registry) as client:
            for source in sources or tuple(self.public.artifacts):
                assert_mirrored(client, self.prefix, source, self.public.artifacts[source])


def tag_digest(client: httpx.Client, prefix: str, source: str) -> str | None:
    """The digest of the destination tag for ``source`` under ``prefix`` (None if untagged)."""
    name, tag = source.rsplit("/", 1)[-1].split(":")
    accept = {"Accept": ", ".join(MANIFEST_TYPES)}
    response = client.head(f"/v2/{prefix}/{name}/manifests/{tag}", headers=accept)
    return response.headers["docker-content-digest"] if response.status_code == 200 else None


def assert_mirrored(
    client: httpx.Client, prefix: str, source: str, artifact: Image | Index
) -> None:
    """The destination tag has the source's digest and every child manifest and blob."""
    assert tag_digest(client, prefix, source) == artifact.digest, source
    assert_complete(client, f"{prefix}/{source.rsplit('/', 1)[-1].split(':')[0]}", artifact)


def assert_complete(client: httpx.Client, repo: str, artifact: Image | Index) -> None:
    """Every child manifest and blob of ``artifact`` is in ``repo``."""
    for image in artifact.images if isinstance(artifact, Index) else (artifact,):
        headers = {"Accept": image.media_type}
        response = client.head(f"/v2/{repo}/manifests/{image.digest}", headers=headers)
        assert response.status_code == 200
        for blob in image.blobs:
            assert client.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 200


@pytest.fixture
def setup(
    public: PublicImages,
    anon_registry: Registry,
    proxies: ProxyFactory,
    tmp_path: Path,
) -> Setup:
    lock = public.write_lock(tmp_path / "images.lock")
    prefix = f"dest-{uuid.uuid4().hex[:8]}"
    return Setup(
        public, proxies(anon_registry.url), proxies(anon_registry.url), anon_registry, prefix, lock
    )


def retry_lines(stderr: str) -> list[str]:
    """The debug log lines of retries."""
    return [line for line in stderr.splitlines() if line.startswith("DEBUG mirror.retry: retry ")]


TRANSIENT = {
    "503 on manifest GETs": ("source", "status", "GET", "/manifests/sha256:", 2, {}),
    "500 on blob uploads": ("dest", "status", "PUT", "/blobs/uploads/", 2, {"status": 500}),
    "reset halfway through a blob": ("source", "reset", "GET", "/blobs/sha256:", 2, {}),
    "short blob body": ("source", "short", "GET", "/blobs/sha256:", 2, {}),
    "short manifest body": ("source", "short", "GET", "/manifests/sha256:", 2, {}),
    "reset on tag HEADs": ("dest", "reset", "HEAD", "/manifests/", 2, {}),
    "stalled blob read": ("source", "stall", "GET", "/blobs/sha256:", 1, {"seconds": 5}),
    "stalled manifest push": ("dest", "stall", "PUT", "/manifests/", 1, {"seconds": 5}),
}


@pytest.mark.parametrize("case", TRANSIENT)
def test_transient_faults_are_retried_logged_and_counted(case: str, setup: Setup) -> None:
    side, kind, method, path, times, params = TRANSIENT[case]
    proxy = setup.source if side == "source" else setup.dest
    rule = proxy.rule(kind, method, path, times, **params)
    code, report, stderr = setup.sync(env={"MESHLIFT_HTTP_TIMEOUT": "1"}, debug=True)
    assert code == 0, stderr
    assert rule.injected == times
    assert {i["status"] for i in report["images"]} == {"copied"}
    setup.assert_mirrored()
    retries = report["summary"]["retries"]  # a 1 s timeout on busy cores may retry more
    assert retries >= times
    assert len(retry_lines(stderr)) == retries, stderr


def test_429_waits_as_long_as_retry_after_says(setup: Setup) -> None:
    rule = setup.source.rule(
        "status", "GET", "/manifests/sha256:", status=429, headers={"Retry-After": "1"}
    )
    code, report, stderr = setup.sync(env={"MESHLIFT_RETRY_MAX_WAIT": "30"})
    assert code == 0, stderr
    setup.assert_mirrored()
    assert report["summary"]["retries"] == 1
    assert retry_gap(setup.source, rule.fired_at[0]) >= 0.95


def test_retry_after_is_bounded_by_the_maximum_wait(setup: Setup) -> None:
    rule = setup.source.rule(
        "status", "GET", "/manifests/sha256:", status=429, headers={"Retry-After": "3600"}
    )
    code, _, stderr = setup.sync(env={"MESHLIFT_RETRY_MAX_WAIT": "0.5"})
    assert code == 0, stderr
    setup.assert_mirrored()
    gap = retry_gap(setup.source, rule.fired_at[0])
    assert 0.45 <= gap < 60, f"waited {gap:.1f}s"  # bounded: far below the 3600 s asked for


def retry_gap(proxy: FaultProxy, fired: float) -> float:
    """Seconds between a fault and the next request for the same path."""
    faulted = next(r for r in proxy.requests if r.at == fired)
    retried = next(r for r in proxy.requests if r.at > fired and r.path == faulted.path)
    return retried.at - fired


def own_layer(public: PublicImages, source: str) -> str:
    """The digest of a layer only ``source`` has."""
    artifact = public.artifacts[source]
    assert isinstance(artifact, Image)
    return artifact.layers[-1].digest


LIES: dict[str, Callable[[PublicImages], tuple[str, str]]] = {
    "wrong blob bytes": lambda p: ("corrupt", f"/blobs/{own_layer(p, ALPHA)}"),
    # by tag and by digest: a new image is fetched by tag, a known one by digest
    "wrong manifest bytes": lambda p: ("corrupt", "/faults/alpha/manifests/"),
    "wrong blob digest header": lambda p: ("wrong-digest", f"/blobs/{own_layer(p, ALPHA)}"),
    "wrong manifest digest header": lambda p: ("wrong-digest", "/faults/alpha/manifests/"),
}


@pytest.mark.parametrize("case", LIES)
def test_a_lying_source_fails_that_image_untagged_and_a_rerun_fixes_it(
    case: str, setup: Setup
) -> None:
    kind, path = LIES[case](setup.public)
    setup.source.rule(kind, "GET", path, times=None)
    code, report, stderr = setup.sync()
    assert code == 1, stderr
    by_source = {i["source"]: i for i in report["images"]}
    assert by_source[ALPHA]["status"] == "failed"
    assert "digest mismatch" in by_source[ALPHA]["error"]
    assert setup.digest(ALPHA) is None
    assert {by_source[s]["status"] for s in (BETA, GAMMA)} == {"copied"}
    setup.assert_mirrored(BETA, GAMMA)

    setup.source.clear()
    code, report, stderr = setup.sync()
    assert code == 0, stderr
    assert {i["source"]: i["status"] for i in report["images"]}[ALPHA] == "copied"
    setup.assert_mirrored()


def test_blob_redirect_to_another_origin_carries_no_authorization(
    basic_registry: Registry,
    anon_registry: Registry,
    proxies: ProxyFactory,
    tmp_path: Path,
) -> None:
    image = make_image("redirected", [30_000, 20_000])
    repo = f"redirect-{uuid.uuid4().hex[:8]}/app"
    push(basic_registry, repo, "1", image)
    proxy = proxies(basic_registry.url)
    proxy.rule("redirect", "GET", "/blobs/sha256:", times=None)
    auth = base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode())
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {proxy.host: {"auth": auth.decode()}}}))
    lock = tmp_path / "images.lock"
    lock.write_text(f'version = 1\n[[images]]\nsource = "{proxy.host}/{repo}:1"\n')
    prefix = f"dest-{uuid.uuid4().hex[:8]}"
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{anon_registry.host}/{prefix}",
        "--auth-file", str(config), "--output", "json", env=FAST,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with registry_client(anon_registry) as client:
        assert_complete(client, f"{prefix}/app", image)
    assert len(proxy.blobs.requests) == len(image.blobs)
    assert not [h for h in proxy.blobs.requests if "authorization" in h]
    blob_gets = proxy.seen("GET", "/blobs/sha256:")
    assert blob_gets and all(
        r.headers.get("authorization", "").startswith("Basic ") for r in blob_gets
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_within_seconds_untagged_and_a_rerun_uploads_only_the_rest(
    signum: signal.Signals, setup: Setup
) -> None:
    stalled = own_layer(setup.public, ALPHA)
    stall = setup.source.rule("stall", "GET", f"/blobs/{stalled}", times=None, seconds=120)
    setup.dest.clear()
    alpha = setup.public.artifacts[ALPHA]
    assert isinstance(alpha, Image)
    finished = [b.digest for b in alpha.blobs if b.digest != stalled]
    process = start_mirror(*setup.args(), "--output", "json", env=FAST)
    try:
        wait_for(lambda: stall.injected >= 1 and setup.digest(BETA) and setup.digest(GAMMA))
        wait_for(lambda: all(has_blob(setup, "alpha", d) for d in finished))
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)  # stopped long before the 120 s stall ends
    finally:
        process.kill()
    assert process.returncode == 128 + signum, stderr
    assert f"interrupted by {signum.name}; unfinished images were not tagged" in stderr
    assert setup.digest(ALPHA) is None

    setup.source.clear()
    mark = len(setup.dest.requests)
    code, report, stderr = setup.sync()
    assert code == 0, stderr
    assert {i["source"]: i["status"] for i in report["images"]} == {
        ALPHA: "copied",
        BETA: "present",
        GAMMA: "present",
    }
    uploads = [
        unquote(r.path)
        for r in setup.dest.requests[mark:]
        if r.method == "PUT" and "/blobs/" in r.path
    ]
    assert len(uploads) == 1 and stalled in uploads[0]
    setup.assert_mirrored()


@pytest.mark.parametrize("command", ["verify", "lock"])
def test_interrupted_verify_and_lock_stop_within_seconds(command: str, setup: Setup) -> None:
    stall = setup.source.rule("stall", "HEAD", "/manifests/", times=None, seconds=120)
    args = setup.args()
    args[0] = command
    if command == "lock":
        at = args.index("--registry-server")
        args[at : at + 2] = ["--check"]
    before = setup.lock.read_bytes()
    process = start_mirror(*args, env=FAST)
    try:
        wait_for(lambda: stall.injected >= 1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)  # stopped long before the 120 s stall ends
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    aftermath = f"; {setup.lock} was not changed" if command == "lock" else ""
    assert stderr.strip().splitlines() == [f"Error: interrupted by SIGINT{aftermath}"]
    assert setup.lock.read_bytes() == before


def has_blob(setup: Setup, name: str, digest: str) -> bool:
    with registry_client(setup.registry) as client:
        return client.head(f"/v2/{setup.prefix}/{name}/blobs/{digest}").status_code == 200


def wait_for(condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def test_hostile_manifests_are_refused_without_being_loaded(
    anon_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> None:
    public = PublicImages(anon_registry, f"hostile-{uuid.uuid4().hex[:8]}")
    layer = make_layer("hostile-layer", 1000)
    small = make_image("hostile-small", [layer])
    for source in ("quay.io/h/big:1", "quay.io/h/endless:1", "quay.io/h/ok:1"):
        public.add(source, small if source.endswith("ok:1") else make_image(source, [500]))
    repo = f"{public.prefix}/quay.io/h"
    entries = [small.descriptor()] * 1001
    layers = [layer.descriptor()] * 513
    with registry_client(anon_registry) as client:
        for name in ("wide", "layered", "deep"):
            push(anon_registry, f"{repo}/{name}", None, small, client)
        put(client, f"{repo}/wide", "1", OCI_INDEX, {"manifests": entries})
        put(
            client,
            f"{repo}/layered",
            "1",
            OCI_MANIFEST,
            {"config": small.config.descriptor(), "layers": layers},
        )
        nested = small.descriptor()
        for _ in range(5):
            nested = put(client, f"{repo}/deep", "1", OCI_INDEX, {"manifests": [nested]})
    proxy = proxies(anon_registry.url)
    json_type = {"Content-Type": OCI_MANIFEST}
    proxy.rule(
        "replace",
        "GET",
        "/h/big/manifests/",
        times=None,
        status=200,
        headers=json_type,
        body=b"{" * (5 << 20),
    )
    chunks = lambda: (b" " * (1 << 20) for _ in range(256))  # noqa: E731 - 256 MiB, chunked
    endless_rule = proxy.rule(
        "replace",
        "GET",
        "/h/endless/manifests/",
        times=None,
        status=200,
        headers=json_type,
        body=chunks,
    )
    sources = [*public.artifacts, "quay.io/h/wide:1", "quay.io/h/layered:1", "quay.io/h/deep:1"]
    lock = public.write_lock(tmp_path / "images.lock", sources)
    endpoints = [a.replace(anon_registry.url, proxy.url) for a in public.endpoint_args()]
    prefix = f"dest-{uuid.uuid4().hex[:8]}"
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{anon_registry.host}/{prefix}",
        *endpoints, "--output", "json", env=FAST,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    errors = {i["source"]: i["error"] for i in report_of(result)["images"]}
    assert errors["quay.io/h/ok:1"] is None
    assert "manifest larger than 4 MiB refused" in errors["quay.io/h/big:1"]
    assert "manifest larger than 4 MiB refused" in errors["quay.io/h/endless:1"]
    assert endless_rule.bytes_sent < 32 << 20
    assert "1001 entries (limit 1000)" in errors["quay.io/h/wide:1"]
    assert "513 layers (limit 512)" in errors["quay.io/h/layered:1"]
    assert "nested deeper than 4 levels" in errors["quay.io/h/deep:1"]
    with registry_client(anon_registry) as client:
        tags = [
            client.head(f"/v2/{prefix}/{n}/manifests/1").status_code
            for n in ("big", "endless", "wide", "layered", "deep")
        ]
    assert tags == [404] * 5


def put(
    client: httpx.Client, repo: str, tag: str, media_type: str, doc: dict[str, Any]
) -> dict[str, Any]:
    """Push a hand-made manifest under ``tag``; return its descriptor."""
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, **doc}).encode()
    response = client.put(
        f"/v2/{repo}/manifests/{tag}", content=raw, headers={"Content-Type": media_type}
    )
    response.raise_for_status()
    return {"mediaType": media_type, "digest": sha256(raw), "size": len(raw)}


RUNS, IMAGES_PER_RUN, FAULT_RATE = 10, 20, 0.10


def repositories(client: httpx.Client) -> list[str]:
    """Every repository of a registry (the catalog, page by page)."""
    found: list[str] = []
    while True:
        params = {"n": 1000, "last": found[-1]} if found else {"n": 1000}
        page = client.get("/v2/_catalog", params=params).json()["repositories"]
        found += page
        if len(page) < 1000:
            return found


@pytest.fixture(scope="module")
def twenty(anon_registry: Registry) -> PublicImages:
    """20 small images under three hosts: 14 single-platform (OCI and Docker), 6 indexes."""
    images = PublicImages(anon_registry, f"acceptance-{uuid.uuid4().hex[:8]}")
    bases = [[make_layer(f"acceptance-base-{n}", 20_000)] for n in range(3)]
    for n in range(IMAGES_PER_RUN):
        host = ("quay.io", "ghcr.io", "gcr.io")[n % 3]
        base, fmt = bases[n % 3], ("oci", "docker")[n % 2]
        if n % 10 < 3:
            pair = [
                make_image(
                    f"acceptance-{n}-{arch}",
                    [8_000 + n],
                    base=base,
                    platform=("linux", arch),
                    fmt=fmt,
                )
                for arch in ("amd64", "arm64")
            ]
            images.add(f"{host}/acceptance/index-{n}:v{n}", make_index(pair, fmt=fmt))
        else:
            images.add(
                f"{host}/acceptance/image-{n}:v{n}",
                make_image(f"acceptance-{n}", [12_000 + n, 3_000], base=base, fmt=fmt),
            )
    return images


def test_acceptance_200_syncs_with_10_percent_of_requests_faulted(
    twenty: PublicImages, anon_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> None:
    """200 image copies (10 ``mirror sync`` runs of 20 images, each into a fresh path of the
    destination) with 10% of all requests to both registries faulted at random (seeded)."""
    source, dest = proxies(anon_registry.url), proxies(anon_registry.url)
    lock = twenty.write_lock(tmp_path / "images.lock")
    endpoints = [a.replace(anon_registry.url, source.url) for a in twenty.endpoint_args()]
    # A blob transfer is a GET stream and a PUT stream, so at 10% faults one attempt fails
    # about 19% of the time; with the default 5 attempts roughly one of the ~1,000 blobs of
    # this test would exhaust them (0.19**5 = 2.5e-4 each). A mirror on a link this bad is
    # configured with more attempts, as here: 0.19**10 = 6e-8.
    env = {**FAST, "MESHLIFT_HTTP_TIMEOUT": "0.5", "MESHLIFT_RETRY_ATTEMPTS": "10"}
    prefixes, retries, started = [], 0, time.monotonic()
    for run in range(RUNS):
        source.randomize(FAULT_RATE, seed=2 * run, stall=0.7)
        dest.randomize(FAULT_RATE, seed=2 * run + 1, stall=0.7)
        prefixes.append(f"acceptance-{uuid.uuid4().hex[:8]}")
        result = run_mirror(
            "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/{prefixes[-1]}",
            *endpoints, "--output", "json", env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        summary = report_of(result)["summary"]
        assert summary["copied"] == IMAGES_PER_RUN
        retries += summary["retries"]
    duration = time.monotonic() - started
    requests = len(source.requests) + len(dest.requests)
    faults = source.faults + dest.faults
    kinds = {
        k: source.random_faults.get(k, 0) + dest.random_faults.get(k, 0)
        for k in source.random_faults | dest.random_faults
    }
    print(
        f"\nacceptance: {RUNS * IMAGES_PER_RUN} image copies in {RUNS} syncs, {requests} requests,"
        f" {faults} faults injected {kinds}, {retries} retries, {duration:.1f}s"
    )
    assert faults >= 0.05 * requests and retries >= faults * 0.9

    with registry_client(anon_registry) as client:
        catalog = repositories(client)
        for prefix in prefixes:
            for source_ref, artifact in twenty.artifacts.items():
                name, tag = source_ref.rsplit("/", 1)[-1].split(":")
                tags = client.get(f"/v2/{prefix}/{name}/tags/list").json()["tags"]
                assert tags == [tag], f"{prefix}/{name}: tags {tags}"
                assert_mirrored(client, prefix, source_ref, artifact)
            repos = {r for r in catalog if r.startswith(f"{prefix}/")}
            assert len(repos) == IMAGES_PER_RUN, f"unexpected repositories under {prefix}"


def test_many_jobs_with_slow_upload_starts_never_run_the_connection_pool_dry(
    anon_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> None:
    public = PublicImages(anon_registry, f"pool-{uuid.uuid4().hex[:8]}")
    for number in range(16):
        public.add(f"quay.io/pool/app{number}:1", make_image(f"pool-{number}", [300_000] * 5))
    lock = public.write_lock(tmp_path / "images.lock")
    dest = proxies(anon_registry.url)
    dest.rule("delay", "POST", "/blobs/uploads/", times=None, seconds=1)
    for _ in range(3):  # the pool ran dry in about one run of three
        prefix = f"dest-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        result = run_mirror(
            "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/{prefix}",
            *public.endpoint_args(), "--jobs", "64", "--output", "json",
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert {i["status"] for i in report_of(result)["images"]} == {"copied"}
        with registry_client(anon_registry) as client:
            for source, artifact in public.artifacts.items():
                assert_mirrored(client, prefix, source, artifact)
        # a dry pool waits out a 60 s read timeout; a healthy run takes seconds
        assert elapsed < 40, f"run took {elapsed:.0f}s"


def test_a_registry_that_does_not_create_repositories_gets_one_line_per_image(
    setup: Setup,
) -> None:
    # Amazon ECR answers a push to a repository nobody created with 404 NAME_UNKNOWN
    unknown = json.dumps(
        {"errors": [{"code": "NAME_UNKNOWN", "message": "The repository does not exist"}]}
    ).encode()
    headers = {"Content-Type": "application/json"}
    ecr = setup.dest.rule(
        "replace", "POST", "/blobs/uploads/", status=404, headers=headers, body=unknown, times=None
    )
    code, report, stderr = setup.sync()
    assert code == 1, stderr
    errors = {i["source"]: i["error"] for i in report["images"]}
    names = {source: source.rsplit("/", 1)[-1].split(":")[0] for source in setup.public.artifacts}
    where = f"{setup.dest.host}/{setup.prefix}"
    assert errors == {
        source: f"repository {where}/{name} does not exist: create it first"
        for source, name in names.items()
    }
    assert report["summary"]["retries"] == 0
    # no retry loop: a refused upload per blob started at once, none after (BLOB_WORKERS = 4)
    assert ecr.injected <= 4 * len(setup.public.artifacts)


def test_every_registry_of_a_run_is_first_asked_at_once(setup: Setup) -> None:
    """The question a run starts with (``HEAD /v2/``: is it a registry, what auth) goes to every
    registry together: over a WAN each costs a round trip or more, and a lock names several."""
    slow = [
        proxy.rule("delay", "HEAD", "^/v2/$", seconds=1.0) for proxy in (setup.source, setup.dest)
    ]
    code, _, stderr = setup.sync()
    assert code == 0, stderr
    asked = sorted(rule.fired_at[0] for rule in slow if rule.fired_at)
    assert len(asked) == 2 and asked[1] - asked[0] < 0.5, asked


def test_the_first_requests_to_a_registry_go_out_together_once_it_answered_the_ping(
    setup: Setup,
) -> None:
    """A run's first question (``HEAD /v2/``) learns whether and how a registry wants
    credentials; after it, the first wave of images does not queue behind one request."""
    heads = setup.dest.rule("delay", "HEAD", "/manifests/", times=None, seconds=0.5)
    code, _, stderr = setup.sync()
    assert code == 0, stderr
    asked = sorted(heads.fired_at)
    assert len(asked) == len(setup.public.artifacts)
    assert asked[-1] - asked[0] < 0.4, asked


def test_an_image_already_in_place_costs_one_round_trip_with_a_pinned_lock(setup: Setup) -> None:
    """With a digest in the lock the source tag is always asked about (drift), so that HEAD and
    the destination's go out together: a scheduled no-op sync waits one round trip per image."""
    entries = [
        f'[[images]]\nsource = "{s}"\ndigest = "{a.digest}"\n'
        for s, a in setup.public.artifacts.items()
    ]
    setup.lock.write_text("version = 1\n\n" + "\n".join(entries))
    code, _, stderr = setup.sync()
    assert code == 0, stderr
    heads = [
        proxy.rule("delay", "HEAD", "/manifests/", times=None, seconds=0.5)
        for proxy in (setup.source, setup.dest)
    ]
    code, report, stderr = setup.sync()
    assert code == 0, stderr
    assert {image["status"] for image in report["images"]} == {"present"}
    source, dest = (sorted(rule.fired_at) for rule in heads)
    assert len(source) == len(dest) == len(setup.public.artifacts)
    assert all(abs(s - d) < 0.4 for s, d in zip(source, dest, strict=True)), (source, dest)
