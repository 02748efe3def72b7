"""meshlift's container image (issue 27): built by scripts/dev image, run by Docker, loaded into R.

The image is built once for this module (several minutes), then loaded into the private dockerd
(Debian's Docker 20.10) with ``docker load``; one more build from empty storage checks
reproducibility.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helm_python import _native

from tests.dockerd import Dockerd
from tests.imagefactory import sha256
from tests.mirrorcli import (
    REPO_ROOT,
    PublicImages,
    load_into,
    publish_default_set,
    report_of,
    run_mirror,
)
from tests.registries import Registry, RegistryFactory
from tests.skopeo import run_skopeo, skopeo_raw

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"meshlift:{VERSION}"
SIZE_BUDGET = 300_000_000  # bytes, uncompressed


def build_image(*args: str) -> Path:
    """``scripts/dev image ARGS``; the archive it wrote."""
    started = time.monotonic()
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "dev"), "image", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1500,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"scripts/dev image exited {result.returncode}:\n{result.stderr[-4000:]}")
    print(f"scripts/dev image {' '.join(args)}: {time.monotonic() - started:.0f} s")
    return Path(result.stdout.splitlines()[-1])


def manifest_digest(archive: Path) -> str:
    """The digest of the one image manifest an OCI archive's index.json names."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        (entry,) = json.load(member)["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == IMAGE
    return str(entry["digest"])


def config_digest(archive: Path) -> str:
    """The digest of the image config the archive's manifest names (Docker's image ID)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("blobs/sha256/" + manifest_digest(archive).removeprefix("sha256:"))
        assert member is not None
        return str(json.load(member)["config"]["digest"])


def archive_sha256(archive: Path) -> str:
    """The sha256 of the archive's bytes."""
    with archive.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def archive() -> Path:
    """dist/meshlift-<version>.oci.tar, built by ``scripts/dev image``."""
    missing = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (Debian: apt-get install podman mmdebstrap)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    path = build_image()
    assert path == REPO_ROOT / "dist" / f"meshlift-{VERSION}.oci.tar"
    return path


@pytest.fixture(scope="module")
def docker(archive: Path, dockerd: Dockerd) -> Iterator[DockerCli]:
    """The docker CLI on the private daemon, which holds the image from ``docker load -i``."""
    cli = DockerCli(dockerd, Path(tempfile.mkdtemp(prefix="meshlift-image-docker-")))
    loaded = cli("load", "--input", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines()[-1] == f"Loaded image: {IMAGE}"
    yield cli
    shutil.rmtree(cli.config, ignore_errors=True)


class DockerCli:
    """``docker`` as a user types it, against one daemon, with an empty client config."""

    def __init__(self, daemon: Dockerd, config: Path) -> None:
        self.env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(config)}
        self.config = config

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, env=self.env, timeout=600
        )

    def inspect(self) -> dict[str, object]:
        result = self("image", "inspect", IMAGE)
        assert result.returncode == 0, result.stderr
        (image,) = json.loads(result.stdout)
        return dict(image)


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    return publish_default_set(anon_registry)


def test_docker_load_and_skopeo_read_the_one_archive(docker: DockerCli, archive: Path) -> None:
    """Docker's manifest.json beside index.json names the blobs the OCI manifest names: docker
    load gives the image under its tag, its ID the config digest; skopeo reads the manifest."""
    server = docker("version", "--format", "{{.Server.Version}}")
    print(f"docker load by dockerd {server.stdout.strip()}")
    image = docker.inspect()
    assert image["Id"] == config_digest(archive)
    assert image["RepoTags"] == [IMAGE]
    raw = run_skopeo("inspect", "--raw", f"oci-archive:{archive}").stdout
    assert sha256(raw) == manifest_digest(archive)


def test_the_image_runs_mirror_and_has_deploy(docker: DockerCli) -> None:
    version = docker("run", "--rm", IMAGE, "--version")
    assert version.returncode == 0, version.stderr
    assert VERSION in version.stdout
    # deploy is on PATH, and Helm's engine (libhelm_c, through its symlinks) loads
    script = (
        "deploy --help >/dev/null"
        " && python -c 'from helm_python import _native; print(_native.helm_c_version())'"
    )
    deploy = docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c", script)
    assert deploy.returncode == 0, deploy.stderr
    assert deploy.stdout.strip() == _native.EXPECTED_HELM_C_VERSION


def test_the_image_is_non_root_labelled_slim_and_in_budget(docker: DockerCli) -> None:
    image = docker.inspect()
    config = image["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["mirror"]
    labels = config["Labels"]
    revision = git("rev-parse", "HEAD")
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == revision
    committed = datetime.fromtimestamp(int(git("log", "-1", "--format=%ct")), UTC)
    assert labels["org.opencontainers.image.created"] == committed.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert labels["org.opencontainers.image.source"]
    size = image["Size"]
    assert isinstance(size, int)
    print(f"image size: {size / 1e6:.1f} MB uncompressed")
    assert size <= SIZE_BUDGET

    script = (  # as root, to see every file
        "awk -F: '$3 == 65532 {print $1}' /etc/passwd;"
        " for tool in cc gcc c++ g++ clang ld make pip pip3; do command -v $tool; done;"
        " find /var/cache /var/lib/apt/lists /root/.cache /tmp -xdev -type f -size +0c;"
        " find / -xdev -name '*.deb' -o -xdev -name '*.whl' -o -xdev -type d -path '*cache/pip';"
        " test -s /etc/ssl/certs/ca-certificates.crt && echo ca-ok"
    )
    looked = docker("run", "--rm", "--user", "0", "--entrypoint", "sh", IMAGE, "-c", script)
    assert looked.stdout.split() == ["meshlift", "ca-ok"], looked.stderr


def registry_config(directory: Path, registry: Registry) -> Path:
    """A Docker config with the registry's credentials, as a dockerconfigjson Secret holds them."""
    directory.mkdir(mode=0o755)
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    config = directory / "config.json"
    config.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    config.chmod(0o644)  # a Secret volume's default mode
    return directory


@pytest.mark.parametrize(
    "hardening",
    [[], ["--user", "65532:65532", "--read-only", "--tmpfs", "/tmp"]],
    ids=["as-built", "uid-65532-read-only-root"],
)
def test_sync_in_the_container_mirrors_every_image_digest_equal(
    docker: DockerCli,
    public: PublicImages,
    make_registry: RegistryFactory,
    tmp_path: Path,
    hardening: list[str],
) -> None:
    dest = make_registry("basic")
    lock = public.write_lock(tmp_path / "images.lock")
    lock.chmod(0o644)
    config = registry_config(tmp_path / "docker", dest)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    metrics.chmod(0o777)  # an emptyDir or a claim with fsGroup
    run = docker(
        "run", "--rm", "--network", "host", *hardening,
        "--volume", f"{lock}:/etc/meshlift/images.lock:ro",
        "--volume", f"{config}:/etc/meshlift/docker:ro",
        "--volume", f"{metrics}:/var/lib/meshlift/metrics",
        "--env", f"MESHLIFT_REGISTRY_SERVER={dest.host}/nsm",
        "--env", "MESHLIFT_LOCK=/etc/meshlift/images.lock",
        "--env", "MESHLIFT_OUTPUT=json",
        "--env", "MESHLIFT_METRICS_FILE=/var/lib/meshlift/metrics/meshlift.prom",
        "--env", "DOCKER_CONFIG=/etc/meshlift/docker",
        IMAGE, "sync", *public.endpoint_args(),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = report_of(run)
    assert {image["status"] for image in report["images"]} == {"copied"}
    for source, artifact in public.artifacts.items():
        copied = "nsm/" + source.rsplit("/", 1)[-1]
        assert sha256(skopeo_raw(dest, copied)) == artifact.digest, source
    prom = (metrics / "meshlift.prom").read_text()
    assert f'meshlift_mirror_images{{status="copied"}} {len(public.artifacts)}' in prom
    assert str(dest.password) not in run.stdout + run.stderr


def test_mirror_load_puts_the_archive_into_r_under_its_digest(
    archive: Path, make_registry: RegistryFactory
) -> None:
    dest = make_registry("basic")
    loaded = run_mirror(
        "load", "--input", str(archive), "--registry-server", f"{dest.host}/tools",
        "--registry-username", str(dest.username), "--registry-password-stdin",
        "--output", "json", input=f"{dest.password}\n",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    ((image),) = report_of(loaded)["images"]
    digest = manifest_digest(archive)
    assert image["digest"] == digest
    assert sha256(skopeo_raw(dest, f"tools/{IMAGE}")) == digest


def test_save_from_docker_then_load_puts_the_daemons_image_into_r(
    docker: DockerCli,
    dockerd: Dockerd,
    archive: Path,
    make_registry: RegistryFactory,
    tmp_path: Path,
) -> None:
    assert docker.inspect()["Id"] == config_digest(archive)
    lock = tmp_path / "meshlift-image.lock"
    lock.write_text(f'version = 1\n[[images]]\nsource = "{IMAGE}"\n')
    saved = tmp_path / "meshlift-image.tar"
    result = run_mirror(
        "save", "--from-docker", "--lock", str(lock), "--output", str(saved),
        "--docker-host", dockerd.host,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    dest = make_registry("basic")
    loaded = load_into(saved, dest, "tools")
    assert loaded.returncode == 0, loaded.stderr
    manifest = json.loads(skopeo_raw(dest, f"tools/{IMAGE}"))
    assert manifest["config"]["digest"] == config_digest(archive)


def test_two_builds_of_one_commit_give_one_digest(archive: Path, tmp_path: Path) -> None:
    """The second build starts from empty storage: a new Debian base, wheelhouse and image.
    The archives are the same bytes, Docker's manifest.json and the tar's headers included."""
    first = manifest_digest(archive)
    try:
        again = build_image("--build", str(tmp_path / "build"), "--dist", str(tmp_path / "dist"))
        assert manifest_digest(again) == first
        assert archive_sha256(again) == archive_sha256(archive)
    finally:
        shutil.rmtree(tmp_path / "build", ignore_errors=True)
