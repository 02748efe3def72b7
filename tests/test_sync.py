"""mirror sync / verify against real registries (issue 3 acceptance)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.imagefactory import (
    Image,
    Index,
    make_image,
    make_layer,
    push,
    registry_client,
    sha256,
)
from tests.mirrorcli import PublicImages, publish_default_set, report_of, run_mirror
from tests.registries import Registry, RegistryFactory
from tests.skopeo import run_skopeo, skopeo_copy, skopeo_raw


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    return publish_default_set(anon_registry)


SIDECAR = "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0"
MOVING = "warning: {} has no digest and `latest` moves: `mirror lock` pins it"


def tag_exists(dest: Registry, name: str) -> bool:
    repo, tag = name.rsplit(":", 1)
    with registry_client(dest) as client:
        return client.head(f"/v2/{repo}/manifests/{tag}").status_code == 200


def dest_name(source: str) -> str:
    """``nsm/<last component>:<tag>`` — the seed's rule under the ``nsm`` path."""
    name = source.rsplit("/", 1)[-1]
    return f"nsm/{name}"


def sync(
    public: PublicImages, dest: Registry, lock: Path, *extra: str, password: str | None = None
) -> tuple[int, dict[str, object], str]:
    creds: list[str] = []
    stdin = None
    if dest.username:
        creds = ["--registry-username", dest.username, "--registry-password-stdin"]
        stdin = (password or dest.password or "") + "\n"
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        *public.endpoint_args(), *creds, "--output", "json", *extra, input=stdin,
    )  # fmt: skip
    report = report_of(result) if result.stdout.strip() else {}
    return result.returncode, report, result.stderr


def children(artifact: Image | Index) -> list[str]:
    return [img.digest for img in artifact.images] if isinstance(artifact, Index) else []


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_sync_preserves_every_digest_and_platform(
    kind: str, public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry(kind)
    lock = public.write_lock(tmp_path / "images.lock")
    code, report, stderr = sync(public, dest, lock)
    assert code == 0, stderr
    statuses = {i["source"]: i["status"] for i in report["images"]}  # type: ignore[index]
    assert set(statuses.values()) == {"copied"}
    for source, artifact in public.artifacts.items():
        target = dest_name(source)
        raw = skopeo_raw(dest, target)
        assert sha256(raw) == artifact.digest, source
        for child in children(artifact):
            repo = target.split(":")[0]
            assert sha256(skopeo_raw(dest, f"{repo}@{child}")) == child
        out = tmp_path / target.replace("/", "_").replace(":", "_")
        skopeo_copy((dest, target), f"dir:{out}", all=False)
        assert (out / "manifest.json").exists()


def test_second_sync_is_heads_only(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("basic")
    lock = public.write_lock(tmp_path / "images.lock")
    assert sync(public, dest, lock)[0] == 0
    src_mark, dst_mark = public.registry.mark(), dest.mark()
    code, report, stderr = sync(public, dest, lock)
    assert code == 0, stderr
    assert {i["status"] for i in report["images"]} == {"present"}  # type: ignore[index]
    src_reqs, dst_reqs = public.registry.requests(src_mark), dest.requests(dst_mark)
    listings = [r for r in src_reqs if r.method == "GET" and r.path.endswith("/tags/list")]
    assert len(listings) == len({r.path for r in listings})  # one per source repository
    assert [r for r in src_reqs + dst_reqs if r.method != "HEAD" and r not in listings] == []
    images = len(public.artifacts)
    tags = [r for r in src_reqs if "/manifests/" in r.path and "/manifests/sha256-" not in r.path]
    assert len(tags) == images  # attachment tags: none listed, so none looked up
    assert [r for r in src_reqs if "/manifests/sha256-" in r.path] == []
    assert len([r for r in dst_reqs if "/manifests/" in r.path and r.status == 200]) == images


def test_shared_base_layer_is_uploaded_once_then_mounted(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("basic")
    lock = public.write_lock(tmp_path / "images.lock")
    mark = dest.mark()
    code, report, _ = sync(public, dest, lock, "--jobs", "4")
    assert code == 0
    base = make_layer("shared-base", 300_000).digest
    puts = [r for r in dest.requests(mark) if r.method == "PUT" and r.params.get("digest") == base]
    assert len(puts) == 1
    mounts = [
        r for r in dest.requests(mark)
        if r.method == "POST" and r.params.get("mount") == base and r.status == 201
    ]  # fmt: skip
    assert len(mounts) == len(public.artifacts) - 1
    assert report["summary"]["blobs_mounted"] >= len(public.artifacts) - 1  # type: ignore[index]


def test_once_the_registry_mounted_a_blob_each_blob_is_asked_about_with_a_mount(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    # curl's blobs are already in its repository (under another tag): found, not uploaded
    dest = make_registry("basic")
    curl = public.artifacts["docker.io/curlimages/curl:latest"]
    assert isinstance(curl, Image)
    push(dest, "nsm/curl", "other", curl)
    mark = dest.mark()
    lock = public.write_lock(tmp_path / "images.lock")
    code, report, stderr = sync(public, dest, lock, "--jobs", "1")
    assert code == 0, stderr
    assert {i["status"] for i in report["images"]} == {"copied"}  # type: ignore[index]
    for source, artifact in public.artifacts.items():
        assert sha256(skopeo_raw(dest, dest_name(source))) == artifact.digest, source
    # nats mounted the base layer spire uploaded; the images after it ask about each blob
    # with a mount from their own repository: 201 if it is there, else the upload it opens
    # (202), which the PUT fills. No HEAD, then POST.
    after = ("/v2/nsm/nginx-mesh-sidecar/", "/v2/nsm/curl/")
    later = [r for r in dest.requests(mark) if r.path.startswith(after)]
    assert [r for r in later if r.method == "HEAD" and "/blobs/" in r.path] == []
    own = [
        r
        for r in later
        if r.method == "POST" and r.path == f"/v2/{r.params.get('from')}/blobs/uploads/"
    ]
    puts = [r for r in later if r.method == "PUT" and "/blobs/uploads/" in r.path]
    assert len(puts) == len([r for r in own if r.status == 202]) == 3  # sidecar's own blobs
    found = {r.params["mount"] for r in own if r.status == 201}
    assert found == {b.digest for b in curl.blobs} - {make_layer("shared-base", 300_000).digest}


def test_token_mount_asks_for_pull_on_the_mounted_repository(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("token")
    code, report, stderr = sync(public, dest, public.write_lock(tmp_path / "images.lock"))
    assert code == 0, stderr
    assert report["summary"]["blobs_mounted"] >= 1  # type: ignore[index]
    scopes = [set(r.scopes) for r in dest.issuer.requests if len(r.scopes) > 1]  # type: ignore[union-attr]
    assert any(
        any(s.endswith(":pull,push") for s in group) and any(s.endswith(":pull") for s in group)
        for group in scopes
    )


def test_each_token_is_asked_for_once_however_many_transfers_need_it(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    # an image's blobs go up in parallel: their first requests all need the same push token
    dest = make_registry("token")
    code, _, stderr = sync(public, dest, public.write_lock(tmp_path / "images.lock"))
    assert code == 0, stderr
    asked = Counter(frozenset(r.scopes) for r in dest.issuer.requests)  # type: ignore[union-attr]
    assert {sorted(s)[0]: n for s, n in asked.items() if n > 1} == {}


def test_a_repository_synced_to_asks_for_one_token_and_one_verified_for_pull_only(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    # as skopeo and containerd do for a push target: the tag check before the upload takes the
    # push token the upload needs; a read-only command asks for no more than pull
    dest = make_registry("token")
    lock = public.write_lock(tmp_path / "images.lock")
    code, _, stderr = sync(public, dest, lock)
    assert code == 0, stderr
    issued = dest.issuer.requests  # type: ignore[union-attr]
    assert [r.scopes for r in issued if all(s.endswith(":pull") for s in r.scopes)] == []
    synced = len(issued)
    result = run_mirror(
        "verify", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        "--registry-username", str(dest.username), "--registry-password-stdin",
        *public.endpoint_args(), input=f"{dest.password}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert issued[synced:] and all(s.endswith(":pull") for r in issued[synced:] for s in r.scopes)


def test_tls_registry_needs_the_ca(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("tls")
    lock = public.write_lock(tmp_path / "images.lock", ["docker.io/curlimages/curl:latest"])
    code, report, _ = sync(public, dest, lock)
    assert code == 1
    error = report["images"][0]["error"]  # type: ignore[index]
    assert "certificate is not trusted" in error
    code, report, stderr = sync(public, dest, lock, "--ca-file", str(dest.ca_file))
    assert code == 0, stderr
    assert (
        sha256(skopeo_raw(dest, "nsm/curl:latest"))
        == public.artifacts["docker.io/curlimages/curl:latest"].digest
    )


def test_wrong_password_fails_without_leaking_it(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("basic")
    lock = public.write_lock(tmp_path / "images.lock", ["docker.io/curlimages/curl:latest"])
    secret = "Wr0ng-Passw0rd-XYZ"
    code, report, stderr = sync(public, dest, lock, password=secret)
    assert code == 1
    error = report["images"][0]["error"]  # type: ignore[index]
    assert "unauthorized" in error.lower()
    assert secret not in stderr and secret not in json.dumps(report)


def test_verify_after_sync_and_after_a_tag_is_deleted(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = public.write_lock(tmp_path / "images.lock")
    assert sync(public, dest, lock)[0] == 0
    args = ["verify", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm"]
    ok = run_mirror(*args, *public.endpoint_args())
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.splitlines() == [MOVING.format("docker.io/curlimages/curl:latest")]
    digest = public.artifacts["docker.io/curlimages/curl:latest"].digest
    pinned = public.write_lock(tmp_path / "pinned.lock", ["docker.io/curlimages/curl:latest"])
    pinned.write_text(pinned.read_text() + f'digest = "{digest}"\n')
    quiet = run_mirror("verify", "--lock", str(pinned), *args[3:], *public.endpoint_args())
    assert (quiet.returncode, quiet.stderr) == (0, "")
    with registry_client(dest) as client:
        assert client.delete(f"/v2/nsm/curl/manifests/{digest}").status_code == 202
    broken = run_mirror(*args, *public.endpoint_args())
    assert broken.returncode == 1
    assert "nsm/curl:latest" in broken.stdout and "missing" in broken.stdout


def test_platform_subset_writes_a_new_index(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    source = "gcr.io/spiffe-io/spire-agent:1.5.6"
    lock = public.write_lock(tmp_path / "images.lock", [source])
    code, report, stderr = sync(public, dest, lock, "--platform", "linux/arm64")
    assert code == 0, stderr
    item = report["images"][0]  # type: ignore[index]
    index = json.loads(skopeo_raw(dest, "nsm/spire-agent:1.5.6"))
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64"]
    assert item["digest"] != public.artifacts[source].digest
    assert any("differs" in note for note in item["notes"])
    again = sync(public, dest, lock, "--platform", "linux/arm64")
    assert again[1]["images"][0]["status"] == "present"  # type: ignore[index]


def test_platform_skips_a_single_platform_image_of_another_platform_and_frozen_fails_it(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    spire, sidecar = "gcr.io/spiffe-io/spire-agent:1.5.6", SIDECAR
    lock = public.write_lock(tmp_path / "images.lock", [spire, sidecar])
    dest = make_registry("anon")
    code, report, stderr = sync(public, dest, lock, "--platform", "linux/arm64")
    assert code == 0, stderr
    items = {i["source"]: i for i in report["images"]}  # type: ignore[index]
    assert items[spire]["status"] == "copied"
    assert items[sidecar]["status"] == "skipped"
    reason = "single-platform image for linux/amd64, not linux/arm64"
    assert any(reason in note for note in items[sidecar]["notes"]), items[sidecar]
    assert not tag_exists(dest, "nsm/nginx-mesh-sidecar:2.0.0")

    code, report, _ = sync(public, dest, lock, "--platform", "linux/arm64", "--frozen")
    assert code == 1
    item = {i["source"]: i for i in report["images"]}[sidecar]  # type: ignore[index]
    assert item["status"] == "failed" and reason in item["error"] and "--frozen" in item["error"]
    assert not tag_exists(dest, "nsm/nginx-mesh-sidecar:2.0.0")

    code, report, stderr = sync(public, dest, lock, "--platform", "linux/amd64")
    assert code == 0, stderr
    item = {i["source"]: i for i in report["images"]}[sidecar]  # type: ignore[index]
    assert item["status"] == "copied"
    assert (
        sha256(skopeo_raw(dest, "nsm/nginx-mesh-sidecar:2.0.0")) == public.artifacts[sidecar].digest
    )


def test_drift_copies_the_locked_digest_and_frozen_fails(
    anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    public = PublicImages(anon_registry, f"drift-{uuid.uuid4().hex[:8]}")
    old, new = make_image("drift-old", [1000]), make_image("drift-new", [1000])
    public.add("quay.io/team/app:1.0", old)
    lock = public.write_lock(tmp_path / "images.lock", extra=f'digest = "{old.digest}"')
    public.add("quay.io/team/app:1.0", new)  # the tag moves after locking
    dest = make_registry("anon")
    code, report, stderr = sync(public, dest, lock)
    assert code == 0, stderr
    item = report["images"][0]  # type: ignore[index]
    assert item["drift"] is True and item["digest"] == old.digest
    assert sha256(skopeo_raw(dest, "nsm/app:1.0")) == old.digest
    code, report, _ = sync(public, make_registry("anon"), lock, "--frozen")
    assert code == 1 and "drift" in report["images"][0]["error"]  # type: ignore[index]


def test_dry_run_changes_nothing_and_counts_bytes(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    mark = dest.mark()
    code, report, stderr = sync(public, dest, public.write_lock(tmp_path / "l.lock"), "--dry-run")
    assert code == 0, stderr
    assert {r.method for r in dest.requests(mark)} <= {"HEAD"}
    assert all(
        any(
            n.startswith("would upload ") and not n.startswith("would upload 0 ")
            for n in i["notes"]
        )
        for i in report["images"]  # type: ignore[union-attr]
    )


def test_one_missing_image_does_not_stop_the_others(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    sources = ["docker.io/curlimages/curl:latest", "docker.io/curlimages/curl:does-not-exist"]
    code, report, _ = sync(public, dest, public.write_lock(tmp_path / "images.lock", sources))
    assert code == 1
    by_source = {i["source"]: i for i in report["images"]}  # type: ignore[union-attr]
    assert by_source[sources[0]]["status"] == "copied"
    assert by_source[sources[1]]["status"] == "failed"
    assert "not found" in by_source[sources[1]]["error"]
    with registry_client(dest) as client:
        assert client.head("/v2/nsm/curl/manifests/does-not-exist").status_code == 404


def test_report_file_and_text_summary(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = public.write_lock(tmp_path / "images.lock")
    report_path = tmp_path / "report.json"
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        *public.endpoint_args(), "--report", str(report_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{len(public.artifacts)} images: {len(public.artifacts)} copied" in result.stdout
    report = json.loads(report_path.read_text())
    keys = {"source", "destination", "digest", "status", "bytes_uploaded", "blobs_mounted", "error"}
    assert all(keys <= set(i) for i in report["images"])
    assert report["summary"]["copied"] == len(public.artifacts)
    # Non-TTY progress: one plain line per image event on stderr.
    assert result.stderr.count(": started") == len(public.artifacts)


def test_nothing_is_tagged_when_a_blob_is_missing_at_the_source(
    anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    public = PublicImages(anon_registry, f"broken-{uuid.uuid4().hex[:8]}")
    image = make_image("broken", [5000, 6000])
    public.add("quay.io/team/broken:1", image)
    with registry_client(anon_registry) as client:
        layer = image.layers[1].digest
        repo = f"{public.prefix}/quay.io/team/broken"
        assert client.delete(f"/v2/{repo}/blobs/{layer}").status_code == 202
    dest = make_registry("anon")
    code, report, _ = sync(public, dest, public.write_lock(tmp_path / "images.lock"))
    assert code == 1
    assert "blob unknown" in report["images"][0]["error"]  # type: ignore[index]
    with registry_client(dest) as client:
        assert client.head("/v2/nsm/broken/manifests/1").status_code == 404
    assert run_skopeo("--version").returncode == 0
