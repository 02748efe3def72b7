"""Helm charts as locked artifacts: sync, verify, lock, list, save/load/inspect, against real
registries and a stand-in chart repository; Helm's own push and pull (helm-python-sdk) check
the result independently."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chartrepo import ChartRepo, build_chart, official_chart, serve_charts, sha256_hex
from tests.faultproxy import ProxyFactory
from tests.mirrorcli import publish_default_set, report_of, run_mirror
from tests.registries import Registry
from tests.skopeo import skopeo_raw

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
UPSTREAM = "https://charts.example.com/stable"
CHART_MTIME = 1_700_000_000


@pytest.fixture
def charts(tmp_path: Path) -> Iterator[ChartRepo]:
    """A stand-in for ``https://charts.example.com/stable``, served under ``/cache/stable``."""
    directory = tmp_path / "charts"
    directory.mkdir()
    build_chart(directory, "demo-mesh", "1.2.3", mtime=CHART_MTIME)
    with serve_charts(directory, "/cache/stable") as repo:
        yield repo


def endpoint(repo: ChartRepo) -> list[str]:
    """``--endpoint charts.example.com=http://127.0.0.1:PORT/cache``."""
    return ["--endpoint", f"charts.example.com=http://{repo.host}/cache"]


def write_lock(path: Path, digest: str | None = None, extra: str = "") -> Path:
    """A lock holding only the demo chart from the stand-in's upstream URL."""
    pin = f'digest = "{digest}"\n' if digest else ""
    path.write_text(
        "version = 1\n\n# the mesh's chart\n[[charts]]\n"
        f'repository = "{UPSTREAM}"\nname = "demo-mesh"\nversion = "1.2.3"\n{pin}{extra}'
    )
    return path


def sync(
    registry: Registry, repo: ChartRepo, lock: Path, prefix: str, *extra: str
) -> dict[str, object]:
    result = run_mirror(
        "sync",
        "--lock",
        str(lock),
        "--registry-server",
        f"{registry.host}/{prefix}",
        *endpoint(repo),
        "--output",
        "json",
        *extra,
    )
    assert result.returncode in (0, 1), result.stderr
    return report_of(result)


def writes(registry: Registry, since: int) -> int:
    """Uploads and manifest writes the registry saw since ``since``."""
    return sum(r.method in ("POST", "PUT", "PATCH") for r in registry.requests(since))


def test_sync_pushes_the_chart_as_helm_push_does(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path, unique_repo
) -> None:
    prefix = unique_repo("charts").split("/")[0] + "-" + os.urandom(3).hex()
    archive = charts.directory / "demo-mesh-1.2.3.tgz"
    report = sync(anon_registry, charts, write_lock(tmp_path / "images.lock"), prefix)
    (item,) = report["images"]
    assert item["kind"] == "chart"
    assert item["status"] == "copied", item
    assert item["destination"] == f"{anon_registry.host}/{prefix}/demo-mesh:1.2.3"
    assert item["source_digest"] == "sha256:" + sha256_hex(archive)
    assert report["summary"]["charts"] == 1 and report["summary"]["images"] == 0
    # fetched under the endpoint's path: index.yaml, then the relative .tgz beside it
    assert charts.count("/cache/stable/index.yaml") == 1
    assert charts.count("/cache/stable/demo-mesh-1.2.3.tgz") == 1

    raw = skopeo_raw(anon_registry, f"{prefix}/demo-mesh:1.2.3")
    manifest = json.loads(raw)
    assert manifest["config"]["mediaType"] == HELM_CONFIG
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == HELM_LAYER
    assert layer["digest"] == "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    config = httpx.get(
        f"{anon_registry.url}/v2/{prefix}/demo-mesh/blobs/{manifest['config']['digest']}"
    ).json()
    assert (config["name"], config["version"], config["apiVersion"]) == ("demo-mesh", "1.2.3", "v2")
    assert manifest["annotations"]["org.opencontainers.image.title"] == "demo-mesh"

    # Helm itself pushes the same archive (dated, as it does, by the file's time) byte-identically
    helm_python = pytest.importorskip("helm_python")
    os.utime(archive, (CHART_MTIME, CHART_MTIME))
    helm_python.push(str(archive), f"oci://{anon_registry.host}/{prefix}-helm", plain_http=True)
    assert skopeo_raw(anon_registry, f"{prefix}-helm/demo-mesh:1.2.3") == raw

    # and helm pull gets the archive back
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    helm_python.pull(
        f"oci://{anon_registry.host}/{prefix}/demo-mesh",
        version="1.2.3",
        destination=str(pulled),
        plain_http=True,
    )
    assert (pulled / "demo-mesh-1.2.3.tgz").read_bytes() == archive.read_bytes()


def test_resync_of_a_pinned_chart_asks_the_repository_nothing_and_uploads_nothing(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    prefix = f"pinned-{os.urandom(4).hex()}"
    digest = "sha256:" + sha256_hex(charts.directory / "demo-mesh-1.2.3.tgz")
    lock = write_lock(tmp_path / "images.lock", digest)
    assert sync(anon_registry, charts, lock, prefix)["images"][0]["status"] == "copied"
    asked, mark = len(charts.log), anon_registry.mark()

    report = sync(anon_registry, charts, lock, prefix)
    (item,) = report["images"]
    assert (item["status"], item["kind"], item["source_digest"]) == ("present", "chart", digest)
    assert len(charts.log) == asked
    assert writes(anon_registry, mark) == 0
    assert report["summary"]["bytes_uploaded"] == 0


def test_resync_of_an_unpinned_chart_reads_only_the_index(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    prefix = f"unpinned-{os.urandom(4).hex()}"
    lock = write_lock(tmp_path / "images.lock")
    sync(anon_registry, charts, lock, prefix)
    mark = anon_registry.mark()
    assert sync(anon_registry, charts, lock, prefix)["images"][0]["status"] == "present"
    assert charts.count(".tgz") == 1
    assert charts.count("index.yaml") == 2
    assert writes(anon_registry, mark) == 0


def test_a_chart_that_does_not_match_the_locked_digest_fails_and_nothing_is_pushed(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    prefix = f"mismatch-{os.urandom(4).hex()}"
    wrong = "sha256:" + "ab" * 32
    mark = anon_registry.mark()
    result = run_mirror(
        "sync",
        "--lock",
        str(write_lock(tmp_path / "images.lock", wrong)),
        "--registry-server",
        f"{anon_registry.host}/{prefix}",
        *endpoint(charts),
    )
    assert result.returncode == 1
    assert "1 failed" in result.stdout
    assert writes(anon_registry, mark) == 0
    missing = httpx.head(f"{anon_registry.url}/v2/{prefix}/demo-mesh/manifests/1.2.3")
    assert missing.status_code == 404


def test_an_index_digest_the_archive_does_not_match_fails_the_chart(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    charts.digests["demo-mesh-1.2.3.tgz"] = "cd" * 32
    prefix = f"badindex-{os.urandom(4).hex()}"
    mark = anon_registry.mark()
    report = sync(anon_registry, charts, write_lock(tmp_path / "images.lock"), prefix)
    (item,) = report["images"]
    assert item["status"] == "failed"
    assert f"index.yaml says sha256:{'cd' * 32}" in item["error"]
    assert writes(anon_registry, mark) == 0


def test_absolute_archive_urls_on_the_repository_host_go_through_the_endpoint(
    anon_registry: Registry, tmp_path: Path
) -> None:
    directory = tmp_path / "abs"
    directory.mkdir()
    build_chart(directory, "demo-mesh", "1.2.3")
    with serve_charts(directory, "/cache/stable", absolute_urls=UPSTREAM) as repo:
        prefix = f"absolute-{os.urandom(4).hex()}"
        report = sync(anon_registry, repo, write_lock(tmp_path / "images.lock"), prefix)
        assert report["images"][0]["status"] == "copied", report
        assert repo.count("/cache/stable/demo-mesh-1.2.3.tgz") == 1


def test_chart_repository_credentials_come_from_the_auth_file_for_the_host_contacted(
    anon_registry: Registry, tmp_path: Path
) -> None:
    directory = tmp_path / "private"
    directory.mkdir()
    build_chart(directory, "demo-mesh", "1.2.3")
    with serve_charts(directory, "/cache/stable", credentials=("chartuser", "s3cret-pw")) as repo:
        lock = write_lock(tmp_path / "images.lock")
        prefix = f"auth-{os.urandom(4).hex()}"
        refused = sync(anon_registry, repo, lock, prefix)
        assert refused["images"][0]["status"] == "failed"
        assert "authentication required" in refused["images"][0]["error"]

        auth = tmp_path / "auth.json"
        token = "Y2hhcnR1c2VyOnMzY3JldC1wdw=="  # chartuser:s3cret-pw
        auth.write_text(json.dumps({"auths": {repo.host: {"auth": token}}}))
        result = run_mirror(
            "sync",
            "--lock",
            str(lock),
            "--registry-server",
            f"{anon_registry.host}/{prefix}",
            *endpoint(repo),
            "--auth-file",
            str(auth),
            "--output",
            "json",
        )
        assert report_of(result)["images"][0]["status"] == "copied", result.stdout
        assert "s3cret-pw" not in result.stdout + result.stderr
        assert repo.count(".tgz", status=200) == 1


def test_lock_writes_the_archive_digest_into_the_chart_entry_keeping_comments(
    charts: ChartRepo, tmp_path: Path
) -> None:
    lock = write_lock(tmp_path / "images.lock", extra='component = "mesh"\n')
    result = run_mirror("lock", "--lock", str(lock), *endpoint(charts))
    assert result.returncode == 0, result.stderr
    digest = "sha256:" + sha256_hex(charts.directory / "demo-mesh-1.2.3.tgz")
    assert f"charts.example.com/stable/demo-mesh:1.2.3: unpinned -> {digest}" in result.stdout
    text = lock.read_text()
    assert "# the mesh's chart" in text
    assert f'digest = "{digest}"' in text
    assert charts.count(".tgz") == 0  # index.yaml lists the digest
    check = run_mirror("lock", "--lock", str(lock), "--check", *endpoint(charts))
    assert check.returncode == 0, check.stdout + check.stderr


def test_verify_checks_the_chart_archive_at_the_destination(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    prefix = f"verify-{os.urandom(4).hex()}"
    digest = "sha256:" + sha256_hex(charts.directory / "demo-mesh-1.2.3.tgz")
    server = f"{anon_registry.host}/{prefix}"
    lock = write_lock(tmp_path / "images.lock", digest)
    before = run_mirror("verify", "--lock", str(lock), "--registry-server", server)
    assert before.returncode == 1
    assert f"FAILED {server}/demo-mesh:1.2.3" in before.stdout
    sync(anon_registry, charts, lock, prefix)
    asked = len(charts.log)
    after = run_mirror("verify", "--lock", str(lock), "--registry-server", server)
    assert after.returncode == 0, after.stdout
    assert f"ok {server}/demo-mesh:1.2.3" in after.stdout
    assert len(charts.log) == asked
    other = write_lock(tmp_path / "other.lock", "sha256:" + "ef" * 32)
    stale = run_mirror("verify", "--lock", str(other), "--registry-server", server)
    assert stale.returncode == 1


def test_list_shows_the_chart_and_its_destination(tmp_path: Path) -> None:
    lock = write_lock(tmp_path / "images.lock", extra='environment = "openshift"\n')
    result = run_mirror(
        "list", "--lock", str(lock), "--registry-server", "r.io/nsm", "--output", "json"
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["kind"] == "chart"
    assert row["source"] == "charts.example.com/stable/demo-mesh:1.2.3"
    assert row["destination"] == "r.io/nsm/demo-mesh:1.2.3"
    kubernetes = run_mirror(
        "list", "--lock", str(lock), "--environment", "kubernetes", "--output", "json"
    )
    assert json.loads(kubernetes.stdout) == []


def test_save_inspect_load_carries_the_chart(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    archive = tmp_path / "mesh.tar"
    lock = write_lock(tmp_path / "images.lock")
    saved = run_mirror("save", "--lock", str(lock), "--output", str(archive), *endpoint(charts))
    assert saved.returncode == 0, saved.stderr
    digest = "sha256:" + sha256_hex(charts.directory / "demo-mesh-1.2.3.tgz")

    inspected = run_mirror("inspect", "--input", str(archive))
    assert inspected.returncode == 0, inspected.stdout
    assert "0 images, 1 Helm chart," in inspected.stdout
    line = next(x for x in inspected.stdout.splitlines() if x.startswith("charts.example.com/"))
    assert "helm chart" in line
    with tarfile.open(archive) as tar:
        handle = tar.extractfile("images.lock")
        embedded = handle.read().decode() if handle else ""
    assert "[[charts]]" in embedded and f'digest = "{digest}"' in embedded

    prefix = f"loaded-{os.urandom(4).hex()}"
    loaded = run_mirror(
        "load", "--input", str(archive), "--registry-server", f"{anon_registry.host}/{prefix}",
        "--output", "json",
    )  # fmt: skip
    (item,) = report_of(loaded)["images"]
    assert (item["kind"], item["status"]) == ("chart", "copied"), item
    manifest = json.loads(skopeo_raw(anon_registry, f"{prefix}/demo-mesh:1.2.3"))
    assert manifest["layers"][0]["digest"] == digest


def test_a_chart_in_an_oci_registry_is_copied_as_it_is(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    helm_python = pytest.importorskip("helm_python")
    archive = charts.directory / "demo-mesh-1.2.3.tgz"
    public = f"public-{os.urandom(4).hex()}"
    helm_python.push(str(archive), f"oci://{anon_registry.host}/{public}", plain_http=True)
    original = skopeo_raw(anon_registry, f"{public}/demo-mesh:1.2.3")
    lock = tmp_path / "images.lock"
    source = f"oci://{anon_registry.host}/{public}/demo-mesh:1.2.3"
    lock.write_text(f'version = 1\n[[charts]]\nsource = "{source}"\n')
    locked = run_mirror("lock", "--lock", str(lock))
    assert locked.returncode == 0, locked.stderr
    assert f'digest = "sha256:{sha256_hex(archive)}"' in lock.read_text()
    prefix = f"mirrored-{os.urandom(4).hex()}"
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{anon_registry.host}/{prefix}",
        "--output", "json",
    )  # fmt: skip
    assert report_of(result)["images"][0]["status"] == "copied", result.stdout
    assert skopeo_raw(anon_registry, f"{prefix}/demo-mesh:1.2.3") == original


def test_the_official_nsm_chart_travels_through_the_stand_in_repository(
    anon_registry: Registry, tmp_path: Path
) -> None:
    nsm_chart = official_chart()
    directory = tmp_path / "nginx"
    directory.mkdir()
    shutil.copy(nsm_chart, directory / "nginx-service-mesh-2.0.0.tgz")
    lock = tmp_path / "images.lock"
    lock.write_text(
        'version = 1\n[[charts]]\nrepository = "https://helm.nginx.com/stable"\n'
        'name = "nginx-service-mesh"\nversion = "2.0.0"\n'
    )
    with serve_charts(directory, "/cache/stable") as repo:
        run_mirror(
            "lock", "--lock", str(lock), "--endpoint", f"helm.nginx.com=http://{repo.host}/cache"
        )
        assert f'digest = "sha256:{sha256_hex(nsm_chart)}"' in lock.read_text()
        prefix = f"nsm-{os.urandom(4).hex()}"
        args = ["--endpoint", f"helm.nginx.com=http://{repo.host}/cache", "--output", "json"]
        server = ["--registry-server", f"{anon_registry.host}/{prefix}"]
        first = run_mirror("sync", "--lock", str(lock), *server, *args)
        assert report_of(first)["images"][0]["status"] == "copied", first.stdout
        manifest = json.loads(skopeo_raw(anon_registry, f"{prefix}/nginx-service-mesh:2.0.0"))
        assert manifest["layers"][0]["digest"] == f"sha256:{sha256_hex(nsm_chart)}"

        fetched, mark = repo.count(".tgz"), anon_registry.mark()
        second = run_mirror("sync", "--lock", str(lock), *server, *args)
        assert report_of(second)["images"][0]["status"] == "present"
        assert repo.count(".tgz") == fetched
        assert writes(anon_registry, mark) == 0


@pytest.mark.docker
def test_a_docker_daemon_is_given_the_images_and_the_charts_are_skipped_with_a_note(
    anon_registry: Registry, charts: ChartRepo, docker_env: dict[str, str], tmp_path: Path
) -> None:
    public = publish_default_set(anon_registry)
    curl = "docker.io/curlimages/curl:latest"
    lock = public.write_lock(tmp_path / "images.lock", [curl])
    chart = write_lock(tmp_path / "chart.lock").read_text().split("\n", 1)[1]
    lock.write_text(lock.read_text() + chart)
    endpoints = [*public.endpoint_args(), *endpoint(charts)]
    prefix = f"daemon-{os.urandom(4).hex()}"
    server = ["--registry-server", f"{anon_registry.host}/{prefix}"]
    synced = run_mirror(
        "sync", "--lock", str(lock), *server, *endpoints, "--engine", "docker",
        "--output", "json", env=docker_env,
    )  # fmt: skip
    note = "note: chart charts.example.com/stable/demo-mesh:1.2.3 skipped: a Docker daemon"
    assert synced.returncode == 0, synced.stderr
    assert note in synced.stderr
    assert [i["source"] for i in report_of(synced)["images"]] == [curl]

    archive = tmp_path / "both.tar"
    saved = run_mirror("save", "--lock", str(lock), "--output", str(archive), *endpoints)
    assert saved.returncode == 0, saved.stderr
    loaded = run_mirror(
        "load", "--input", str(archive), "--to-docker", "--output", "json", env=docker_env
    )
    assert loaded.returncode == 0, loaded.stderr
    assert note in loaded.stderr
    assert [i["source"] for i in report_of(loaded)["images"]] == [curl]


def test_a_loopback_repository_is_reached_over_plain_http_without_an_endpoint(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    lock = tmp_path / "images.lock"
    lock.write_text(
        f'version = 1\n[[charts]]\nrepository = "{charts.url}"\nname = "demo-mesh"\n'
        'version = "1.2.3"\n'
    )
    prefix = f"loopback-{os.urandom(4).hex()}"
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{anon_registry.host}/{prefix}",
        "--output", "json",
    )  # fmt: skip
    (item,) = report_of(result)["images"]
    assert (item["status"], item["source"]) == (
        "copied",
        f"{charts.host}/cache/stable/demo-mesh:1.2.3",
    )


def test_every_chart_yaml_field_is_pushed_as_helm_pushes_it(
    anon_registry: Registry, tmp_path: Path
) -> None:
    helm_python = pytest.importorskip("helm_python")
    directory = tmp_path / "rich"
    directory.mkdir()
    metadata = {
        "home": "https://example.com/mesh?a=1&b=<2>",
        "sources": ["https://github.com/example/mesh", "https://mirror.example/mesh"],
        "keywords": ["mesh", "nginx"],
        "maintainers": [{"name": "Ann", "email": "ann@example.com"}, {"name": "Bo"}],
        "icon": "https://example.com/icon.png",
        "kubeVersion": ">= 1.22-0",
        "deprecated": True,
        "annotations": {"category": "Networking", "org.opencontainers.image.title": "nope"},
        "dependencies": [{"name": "sub", "version": "0.1.0", "repository": "", "tags": ["x"]}],
    }
    description = "Multi-line\ndescription\twith <html> & ünïcode"
    archive = build_chart(
        directory, "rich-chart", "0.4.0-rc.1", description=description, metadata=metadata
    )
    os.utime(archive, (CHART_MTIME, CHART_MTIME))
    with serve_charts(directory, "/cache/stable") as repo:
        lock = tmp_path / "images.lock"
        lock.write_text(
            f'version = 1\n[[charts]]\nrepository = "{UPSTREAM}"\nname = "rich-chart"\n'
            'version = "0.4.0-rc.1"\n'
        )
        prefix = f"rich-{os.urandom(4).hex()}"
        report = sync(anon_registry, repo, lock, prefix)
        assert report["images"][0]["status"] == "copied", report
    helm_python.push(str(archive), f"oci://{anon_registry.host}/{prefix}-helm", plain_http=True)
    ours = skopeo_raw(anon_registry, f"{prefix}/rich-chart:0.4.0-rc.1")
    assert ours == skopeo_raw(anon_registry, f"{prefix}-helm/rich-chart:0.4.0-rc.1")


def test_a_version_the_index_does_not_list_fails_the_chart_by_name(
    anon_registry: Registry, charts: ChartRepo, tmp_path: Path
) -> None:
    lock = write_lock(tmp_path / "images.lock")
    lock.write_text(lock.read_text().replace('"1.2.3"', '"9.9.9"'))
    report = sync(anon_registry, charts, lock, f"absent-{os.urandom(4).hex()}")
    (item,) = report["images"]
    assert item["status"] == "failed"
    assert item["error"] == f"{UPSTREAM}/index.yaml: lists no chart demo-mesh version 9.9.9"


def test_repository_faults_are_retried_and_credentials_stay_with_the_repository_host(
    anon_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "faulty"
    directory.mkdir()
    build_chart(directory, "demo-mesh", "1.2.3")
    with serve_charts(directory, "/cache/stable", credentials=("chartuser", "s3cret-pw")) as repo:
        proxy = proxies(f"http://{repo.host}")
        proxy.rule("status", "GET", r"index\.yaml$")
        proxy.rule("short", "GET", r"\.tgz$")
        proxy.rule("redirect", "GET", r"\.tgz$")
        auth = tmp_path / "auth.json"
        token = "Y2hhcnR1c2VyOnMzY3JldC1wdw=="  # chartuser:s3cret-pw
        auth.write_text(json.dumps({"auths": {proxy.host: {"auth": token}}}))
        result = run_mirror(
            "sync", "--lock", str(write_lock(tmp_path / "images.lock")),
            "--registry-server", f"{anon_registry.host}/faulty-{os.urandom(4).hex()}",
            "--endpoint", f"charts.example.com={proxy.url}/cache", "--auth-file", str(auth),
            "--output", "json",
            env={"MESHLIFT_RETRY_INITIAL_WAIT": "0.01"},
        )  # fmt: skip
    (item,) = report_of(result)["images"]
    assert item["status"] == "copied", item
    assert item["retries"] == 2
    assert proxy.faults == 3
    assert proxy.blobs.requests, "the archive was not fetched from the redirect target"
    assert all("authorization" not in {k.lower() for k in h} for h in proxy.blobs.requests)
    assert "s3cret-pw" not in result.stdout + result.stderr
