"""The Docker daemon transport against a private dockerd (issue 6 acceptance).

Every test talks to its own daemon through ``DOCKER_HOST`` and keeps the client's state in a
temporary ``DOCKER_CONFIG`` and ``HOME``, so the machine's Docker setup is neither used nor
changed.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from mirror.daemonsync import PushProgress
from mirror.errors import NotFound, RegistryError, Unauthorized
from mirror.image.reference import parse_reference
from mirror.net.hosts import HostOptions, parse_endpoints
from mirror.transports.daemon import daemon_error, pull_repository
from tests.dockerd import Dockerd
from tests.faultproxy import ProxyFactory
from tests.imagefactory import Image, Index, make_image, push, registry_client, sha256
from tests.mirrorcli import PublicImages, load_into, publish_default_set, report_of, run_mirror
from tests.registries import Registry, RegistryFactory
from tests.skopeo import run_skopeo, skopeo_copy, skopeo_raw

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    return publish_default_set(anon_registry)


@pytest.fixture
def api(dockerd: Dockerd) -> Iterator[Any]:
    """The test's own view of the daemon, with no image left over from another test."""
    client = docker.APIClient(base_url=dockerd.host, version="auto")
    for image in client.images():
        client.remove_image(image["Id"], force=True)
    yield client
    client.close()


def image_for_daemon(artifact: Image | Index, api: Any) -> Image:
    """The image the daemon takes from ``artifact``: the one for its own platform."""
    if isinstance(artifact, Image):
        return artifact
    version = api.version()
    return next(i for i in artifact.images if i.platform[:2] == (version["Os"], version["Arch"]))


def dest_name(source: str) -> str:
    """``nsm/<last component>:<tag>``: the seed's rule under the ``nsm`` path."""
    return "nsm/" + source.rsplit("/", 1)[-1]


def secret_registry(make_registry: RegistryFactory) -> Registry:
    """A basic-auth registry whose password is unique enough to search files for."""
    return make_registry("basic", password=f"pw-{uuid.uuid4().hex}")


def sync_docker(
    public: PublicImages, dest: Registry, lock: Path, env: dict[str, str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    result = run_mirror(
        "sync", "--engine", "docker", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        "--registry-username", str(dest.username), "--registry-password-stdin",
        *public.endpoint_args(), "--output", "json", *extra,
        input=f"{dest.password}\n", env=env,
    )  # fmt: skip
    report = report_of(result) if result.stdout.strip() else {}
    return result.returncode, report, result.stderr


def files_containing(root: Path, needles: list[bytes]) -> list[Path]:
    """Regular files under ``root`` holding any of ``needles``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(path)
    return found


def test_sync_engine_docker_pushes_the_daemons_image_of_every_source(
    public: PublicImages,
    make_registry: RegistryFactory,
    dockerd: Dockerd,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    dest = secret_registry(make_registry)
    lock = public.write_lock(tmp_path / "images.lock")
    code, report, stderr = sync_docker(public, dest, lock, docker_env)
    assert code == 0, stderr
    images = {i["source"]: i for i in report["images"]}
    assert {i["status"] for i in images.values()} == {"copied"}
    for source, artifact in public.artifacts.items():
        target = dest_name(source)
        manifest = json.loads(skopeo_raw(dest, target))
        assert manifest["config"]["digest"] == image_for_daemon(artifact, api).config.digest, source
        item = images[source]
        assert item["source_digest"] == artifact.digest
        assert item["digest"] == sha256(skopeo_raw(dest, target)) != artifact.digest
        assert any("re-encodes manifests" in n for n in item["notes"])
        platform = "/".join(image_for_daemon(artifact, api).platform)
        single = any(f"became single-platform {platform}" in n for n in item["notes"])
        assert single == isinstance(artifact, Index)
        out = tmp_path / ("pulled-" + target.replace("/", "_").replace(":", "_"))
        skopeo_copy((dest, target), f"dir:{out}", all=False)
        assert (out / "manifest.json").exists()
    assert api.images() == [], "the tags the sync created are removed, and so the images"

    password = str(dest.password).encode()
    basic = base64.b64encode(f"{dest.username}:{dest.password}".encode())
    home_config = Path(os.path.expanduser("~")) / ".docker" / "config.json"
    scanned = [Path(docker_env["DOCKER_CONFIG"]), Path(docker_env["HOME"]), dockerd.root]
    scanned += [p for p in (home_config.parent, Path("/etc/docker")) if p.exists()]
    for root in scanned:
        assert files_containing(root, [password, basic]) == [], root

    code, report, stderr = sync_docker(public, dest, lock, docker_env)
    assert code == 0, stderr
    assert {i["status"] for i in report["images"]} == {"present"}
    assert report["summary"]["bytes_uploaded"] == 0


def test_the_endpoint_mirror_gets_its_own_credentials_never_the_upstreams(
    make_registry: RegistryFactory,
    proxies: ProxyFactory,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    mirror = secret_registry(make_registry)
    image = make_image("mirrored", [50_000], fmt="docker")
    push(mirror, "cache/gcr.io/team/app", "1", image)
    endpoint = proxies(mirror.url)
    upstream_password = f"upstream-{uuid.uuid4().hex}"
    auths = {"gcr.io": ("upstream-user", upstream_password)}
    auths[endpoint.host] = (str(mirror.username), str(mirror.password))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {
        host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        for host, (user, password) in auths.items()
    }}))  # fmt: skip
    lock = tmp_path / "images.lock"
    lock.write_text('version = 1\n[[images]]\nsource = "gcr.io/team/app:1"\n')
    dest = make_registry("basic")
    result = run_mirror(
        "sync", "--engine", "docker", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        "--registry-username", str(dest.username), "--registry-password-stdin",
        "--endpoint", f"gcr.io={endpoint.url}/cache/gcr.io", "--auth-file", str(config),
        "--output", "json", input=f"{dest.password}\n", env=docker_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [i["status"] for i in report_of(result)["images"]] == ["copied"]
    assert upstream_password not in result.stdout + result.stderr
    sent = {r.headers.get("authorization") for r in endpoint.seen()} - {None}
    basic = base64.b64encode(f"{mirror.username}:{mirror.password}".encode()).decode()
    assert sent == {f"Basic {basic}"}


def test_keep_leaves_the_pulled_images_under_their_source_names(
    public: PublicImages,
    make_registry: RegistryFactory,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    dest = make_registry("basic")
    sources = ["docker.io/curlimages/curl:latest", "gcr.io/spiffe-io/spire-agent:1.5.6"]
    lock = public.write_lock(tmp_path / "images.lock", sources)
    code, _, stderr = sync_docker(public, dest, lock, docker_env, "--keep")
    assert code == 0, stderr
    tags = sorted(t for image in api.images() for t in image["RepoTags"] or [])
    assert tags == ["curlimages/curl:latest", "gcr.io/spiffe-io/spire-agent:1.5.6"]


def test_platform_picks_the_one_image_the_daemon_pulls(
    public: PublicImages,
    make_registry: RegistryFactory,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    dest = make_registry("basic")
    spire = "gcr.io/spiffe-io/spire-agent:1.5.6"
    lock = public.write_lock(tmp_path / "images.lock", [spire])
    code, report, stderr = sync_docker(public, dest, lock, docker_env, "--platform", "linux/arm64")
    assert code == 0, stderr
    artifact = public.artifacts[spire]
    assert isinstance(artifact, Index)
    arm64 = next(i for i in artifact.images if i.platform == ("linux", "arm64"))
    manifest = json.loads(skopeo_raw(dest, dest_name(spire)))
    assert manifest["config"]["digest"] == arm64.config.digest
    (item,) = report["images"]
    assert any("became single-platform linux/arm64" in n for n in item["notes"])


def test_platform_skips_a_single_platform_image_of_another_platform(
    public: PublicImages,
    make_registry: RegistryFactory,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    dest = make_registry("basic")
    curl = "docker.io/curlimages/curl:latest"
    lock = public.write_lock(tmp_path / "images.lock", [curl])
    reason = "single-platform image for linux/amd64, not linux/arm64"
    code, report, stderr = sync_docker(public, dest, lock, docker_env, "--platform", "linux/arm64")
    assert code == 0, stderr
    (item,) = report["images"]
    assert item["status"] == "skipped" and reason in item["notes"][-1], item
    code, report, stderr = sync_docker(
        public, dest, lock, docker_env, "--platform", "linux/arm64", "--frozen"
    )
    assert code == 1, stderr
    (item,) = report["images"]
    assert item["status"] == "failed" and reason in item["error"], item
    with registry_client(dest) as client:
        assert client.head("/v2/nsm/curl/manifests/latest").status_code == 404
    assert api.images() == []


def test_sync_engine_docker_wrong_password_fails_without_leaking_it(
    public: PublicImages,
    make_registry: RegistryFactory,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    dest = make_registry("basic")
    lock = public.write_lock(tmp_path / "images.lock", ["docker.io/curlimages/curl:latest"])
    dest.password = "not-the-password"
    code, report, stderr = sync_docker(public, dest, lock, docker_env)
    assert code == 1
    (item,) = report["images"]
    assert item["status"] == "failed" and "unauthorized" in item["error"]
    assert "not-the-password" not in json.dumps(report) + stderr
    assert api.images() == []


def test_missing_source_fails_that_image_only(
    public: PublicImages,
    make_registry: RegistryFactory,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    dest = make_registry("basic")
    sources = ["docker.io/curlimages/curl:latest", "docker.io/curlimages/curl:missing"]
    code, report, stderr = sync_docker(
        public, dest, public.write_lock(tmp_path / "images.lock", sources), docker_env
    )
    assert code == 1, stderr
    statuses = {i["source"]: (i["status"], i["error"]) for i in report["images"]}
    assert statuses["docker.io/curlimages/curl:latest"] == ("copied", None)
    status, error = statuses["docker.io/curlimages/curl:missing"]
    assert status == "failed" and "not found" in error


def test_load_to_docker_of_a_saved_archive(
    public: PublicImages, docker_env: dict[str, str], api: Any, tmp_path: Path
) -> None:
    archive = tmp_path / "nsm-images.tar"
    lock = public.write_lock(tmp_path / "images.lock")
    saved = run_mirror(
        "save", "--lock", str(lock), "--output", str(archive), *public.endpoint_args()
    )
    assert saved.returncode == 0, saved.stderr
    load = ["load", "--input", str(archive), "--to-docker", "--output", "json"]
    loaded = run_mirror(*load, "--registry-server", "registry.example/nsm", env=docker_env)
    assert loaded.returncode == 0, loaded.stderr
    assert {i["status"] for i in report_of(loaded)["images"]} == {"copied"}
    listed = {t for image in api.images() for t in image["RepoTags"] or []}
    for source, artifact in public.artifacts.items():
        config = image_for_daemon(artifact, api).config.digest
        short = source.removeprefix("docker.io/").removeprefix("library/")
        destination = "registry.example/" + dest_name(source)
        assert {short, destination} <= listed
        assert api.inspect_image(source)["Id"] == config
        assert api.inspect_image(destination)["Id"] == config

    again = run_mirror(*load, env=docker_env)
    assert again.returncode == 0, again.stderr
    assert [i["destination"] for i in report_of(again)["images"]] == list(public.artifacts)
    assert {i["status"] for i in report_of(again)["images"]} == {"present"}


def test_load_to_docker_skips_a_single_platform_image_of_another_platform(
    public: PublicImages, docker_env: dict[str, str], api: Any, tmp_path: Path
) -> None:
    spire, curl = "gcr.io/spiffe-io/spire-agent:1.5.6", "docker.io/curlimages/curl:latest"
    archive = tmp_path / "nsm-images.tar"
    lock = public.write_lock(tmp_path / "images.lock", [spire, curl])
    saved = run_mirror(
        "save", "--lock", str(lock), "--output", str(archive), *public.endpoint_args()
    )
    assert saved.returncode == 0, saved.stderr
    loaded = run_mirror(
        "load", "--input", str(archive), "--to-docker", "--platform", "linux/arm64",
        "--output", "json", env=docker_env,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    items = {i["source"]: i for i in report_of(loaded)["images"]}
    assert items[spire]["status"] == "copied"
    assert items[curl]["status"] == "skipped"
    assert "single-platform image for linux/amd64, not linux/arm64" in items[curl]["notes"][-1]
    tags = {t for image in api.images() for t in image["RepoTags"] or []}
    assert spire in tags and not [t for t in tags if "curl" in t]


def test_save_from_docker_then_load_into_a_registry(
    anon_registry: Registry,
    make_registry: RegistryFactory,
    docker_env: dict[str, str],
    api: Any,
    tmp_path: Path,
) -> None:
    built = make_image(f"local-{uuid.uuid4().hex[:6]}", [40_000, 30_000], fmt="docker")
    repo = f"built/app-{uuid.uuid4().hex[:6]}"
    push(anon_registry, repo, "dev", built)
    for message in api.pull(f"{anon_registry.host}/{repo}", tag="dev", stream=True, decode=True):
        assert "error" not in message
    source = f"{anon_registry.host}/{repo}:dev"
    lock = tmp_path / "images.lock"
    lock.write_text(f'version = 1\n\n[[images]]\nsource = "{source}"\n')
    archive = tmp_path / "local.tar"
    saved = run_mirror(
        "save", "--from-docker", "--lock", str(lock), "--output", str(archive), env=docker_env
    )
    assert saved.returncode == 0, saved.stderr
    run_skopeo("inspect", f"oci-archive:{archive}:{source}")

    dest = make_registry("basic")
    loaded = load_into(archive, dest)
    assert loaded.returncode == 0, loaded.stderr
    manifest = json.loads(skopeo_raw(dest, f"nsm/{repo.rsplit('/', 1)[1]}:dev"))
    assert manifest["config"]["digest"] == built.config.digest
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer.diff_id for layer in built.layers
    ]


def test_save_from_docker_of_images_saved_at_once_keeps_each_under_its_own_name(
    anon_registry: Registry, docker_env: dict[str, str], api: Any, tmp_path: Path
) -> None:
    image_ids = {}
    for name in ("first", "second"):
        built = make_image(f"{name}-{uuid.uuid4().hex[:6]}", [400_000, 300_000], fmt="docker")
        repo = f"{anon_registry.host}/built/{name}-{uuid.uuid4().hex[:6]}"
        push(anon_registry, repo.split("/", 1)[1], "dev", built)
        for message in api.pull(repo, tag="dev", stream=True, decode=True):
            assert "error" not in message
        image_ids[f"{repo}:dev"] = api.inspect_image(f"{repo}:dev")["Id"]
    assert len(set(image_ids.values())) == 2
    lock = tmp_path / "images.lock"
    lock.write_text("version = 1\n" + "".join(f'\n[[images]]\nsource = "{s}"\n' for s in image_ids))
    archive = tmp_path / "local.tar"
    saved = run_mirror(
        "save", "--from-docker", "--jobs", "2", "--lock", str(lock), "--output", str(archive),
        env=docker_env,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr

    dest = anon_registry
    prefix = f"loaded-{uuid.uuid4().hex[:6]}"
    loaded = run_mirror(
        "load", "--input", str(archive), "--registry-server", f"{dest.host}/{prefix}"
    )
    assert loaded.returncode == 0, loaded.stderr
    for source, image_id in image_ids.items():
        name = source.rsplit("/", 1)[1]
        manifest = json.loads(skopeo_raw(dest, f"{prefix}/{name}"))
        assert manifest["config"]["digest"] == image_id, source


def test_daemon_not_running_is_one_line_and_exit_2(public: PublicImages, tmp_path: Path) -> None:
    lock = public.write_lock(tmp_path / "images.lock", ["docker.io/curlimages/curl:latest"])
    layout = tmp_path / "layout"
    saved = run_mirror(
        "save", "--lock", str(lock), "--output", f"{layout}/", *public.endpoint_args()
    )
    assert saved.returncode == 0, saved.stderr
    socket = f"unix://{tmp_path}/no-daemon.sock"
    commands = [
        ["sync", "--engine", "docker", "--lock", str(lock), "--registry-server", "127.0.0.1:1/x"],
        ["load", "--input", str(layout), "--to-docker"],
        ["save", "--from-docker", "--lock", str(lock), "--output", str(tmp_path / "out.tar")],
    ]
    for command in commands:
        result = run_mirror(*command, env={"DOCKER_HOST": socket, "HOME": str(tmp_path)})
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        assert lines[0].startswith(f"Error: cannot use the Docker daemon at {socket}: "), lines
        assert "No such file or directory" in lines[0]


@pytest.mark.parametrize(
    ("message", "kind", "retryable"),
    [
        ("received unexpected HTTP status: 503 Service Unavailable", RegistryError, True),
        ("toomanyrequests: You have reached your pull rate limit", RegistryError, True),
        (
            'Get "http://127.0.0.1:1/v2/": dial tcp: connect: connection refused',
            RegistryError,
            True,
        ),
        ("unauthorized: authentication required", Unauthorized, False),
        ("manifest for r/x:1 not found: manifest unknown", NotFound, False),
        ("blob upload invalid", RegistryError, False),
    ],
)
def test_daemon_errors_are_classified_for_retries(
    message: str, kind: type[RegistryError], retryable: bool
) -> None:
    error = daemon_error("r/x:1", message)
    assert type(error) is kind and error.retryable is retryable
    assert str(error) == f"r/x:1: {message}"


def test_push_progress_counts_bytes_once_and_how_each_layer_got_there() -> None:
    progress = PushProgress()
    messages = [
        {"status": "Preparing", "id": "a"},
        {"status": "Pushing", "id": "a", "progressDetail": {"current": 400, "total": 1000}},
        {"status": "Pushing", "id": "a", "progressDetail": {"current": 1200, "total": 1000}},
        {"status": "Pushed", "id": "a"},
        {"status": "Layer already exists", "id": "b"},
        {"status": "Mounted from nsm/other", "id": "c"},
        {"status": "1.0: digest: sha256:ab size: 9"},
        {"aux": {"Tag": "1.0", "Digest": "sha256:ab", "Size": 9}},
    ]
    assert [progress.update(m) for m in messages] == [0, 400, 600, 0, 0, 0, 0, 0]
    assert progress.bytes_uploaded == 1000 and progress.digest == "sha256:ab"
    assert (progress.uploaded, progress.present, progress.mounted) == ({"a"}, {"b"}, {"c"})


@pytest.mark.parametrize(
    ("source", "endpoint", "pulled"),
    [
        ("gcr.io/spiffe-io/spire-agent:1.5.6", None, "gcr.io/spiffe-io/spire-agent"),
        ("gcr.io/spiffe-io/spire-agent:1.5.6", "gcr.io=http://127.0.0.1:5000/cache",
         "127.0.0.1:5000/cache/spiffe-io/spire-agent"),
        ("nats:2.9", "docker.io=https://mirror.example", "mirror.example/library/nats"),
    ],
)  # fmt: skip
def test_endpoints_apply_to_where_the_daemon_pulls(
    source: str, endpoint: str | None, pulled: str
) -> None:
    hosts = HostOptions(parse_endpoints([endpoint] if endpoint else []))
    assert pull_repository(parse_reference(source), hosts) == pulled
