"""mirror save / load / inspect through OCI image layout archives (issue 4 acceptance)."""

from __future__ import annotations

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mirror.image.lock import LockEntry, parse_lock, render_lock
from mirror.image.manifest import Platform
from mirror.image.reference import parse_reference
from tests.imagefactory import (
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    REF_NAME,
    Image,
    Index,
    make_image,
    registry_client,
    sha256,
)
from tests.mirrorcli import (
    REPO_ROOT,
    PublicImages,
    load_into,
    publish_default_set,
    report_of,
    run_mirror,
)
from tests.registries import Registry, RegistryFactory
from tests.skopeo import run_skopeo, skopeo_copy, skopeo_raw

SIDECAR = "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0"
SPIRE = "gcr.io/spiffe-io/spire-agent:1.5.6"
OCI_TYPED = (SPIRE, SIDECAR)


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    return publish_default_set(anon_registry)


def dest_name(source: str) -> str:
    """``nsm/<last component>:<tag>``: the seed's rule under the ``nsm`` path."""
    return "nsm/" + source.rsplit("/", 1)[-1]


def sizes_of(artifact: Image | Index) -> dict[str, int]:
    """Every digest an artifact's layout holds (manifests, configs, layers) with its size."""
    images = artifact.images if isinstance(artifact, Index) else (artifact,)
    sizes = {artifact.digest: len(artifact.manifest)}
    for image in images:
        sizes[image.digest] = len(image.manifest)
        sizes.update((b.digest, b.size) for b in image.blobs)
    return sizes


def blobs_of(artifact: Image | Index) -> set[str]:
    """Every digest an artifact's layout holds."""
    return set(sizes_of(artifact))


def save(public: PublicImages, lock: Path, output: Path | str, *extra: str) -> Any:
    return run_mirror(
        "save", "--lock", str(lock), "--output", str(output), *public.endpoint_args(), *extra
    )


def load(
    archive: Path, dest: Registry, *extra: str
) -> tuple[int, dict[str, Any], subprocess.CompletedProcess[str]]:
    result = load_into(archive, dest, "nsm", "--output", "json", *extra)
    assert "Traceback" not in result.stderr, result.stderr
    report = report_of(result) if result.stdout.strip() else {}
    return result.returncode, report, result


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {i["source"]: i["status"] for i in report["images"]}


def assert_loaded(dest: Registry, artifact: Image | Index, name: str) -> None:
    """``name`` is at ``dest`` with the artifact's digest, and so is every child manifest."""
    assert sha256(skopeo_raw(dest, name)) == artifact.digest, name
    for image in artifact.images if isinstance(artifact, Index) else ():
        assert sha256(skopeo_raw(dest, f"{name.split(':')[0]}@{image.digest}")) == image.digest


def tag_exists(dest: Registry, name: str) -> bool:
    repo, tag = name.rsplit(":", 1)
    with registry_client(dest) as client:
        return client.head(f"/v2/{repo}/manifests/{tag}").status_code == 200


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def rewrite_tar(
    source: Path,
    target: Path,
    drop: frozenset[str] = frozenset(),
    replace: dict[str, bytes] | None = None,
) -> Path:
    """A copy of a tar without ``drop`` members and with ``replace`` members' contents."""
    replace = replace or {}
    with tarfile.open(source) as src, tarfile.open(target, "w") as dst:
        for info in src:
            if info.name in drop:
                continue
            data = replace.get(info.name)
            if data is None:
                dst.addfile(info, src.extractfile(info) if info.isreg() else None)
            else:
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
    return target


@pytest.fixture(scope="module")
def saved(public: PublicImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every public image saved once into a tar (tests copy it before changing it)."""
    root = tmp_path_factory.mktemp("saved")
    lock = public.write_lock(root / "images.lock")
    result = save(public, lock, root / "nsm-images.tar")
    assert result.returncode == 0, result.stderr
    return root / "nsm-images.tar"


def test_save_then_load_preserves_every_digest(
    public: PublicImages, saved: Path, make_registry: RegistryFactory
) -> None:
    assert sorted(p.name for p in saved.parent.iterdir()) == ["images.lock", "nsm-images.tar"]
    with tarfile.open(saved) as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        lock = tomllib.load(tar.extractfile("images.lock"))  # type: ignore[arg-type]
    refs = {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]}
    assert refs == {source: a.digest for source, a in public.artifacts.items()}
    assert {e["source"]: e["digest"] for e in lock["images"]} == refs
    blobs = [n.removeprefix("blobs/sha256/") for n in names if n.startswith("blobs/sha256/")]
    wanted = set().union(*(blobs_of(a) for a in public.artifacts.values()))
    assert sorted(blobs) == sorted(d.removeprefix("sha256:") for d in wanted)  # shared: once

    dest = make_registry("basic")
    code, report, result = load(saved, dest)
    assert code == 0, result.stderr
    assert set(statuses(report).values()) == {"copied"}
    for source, artifact in public.artifacts.items():
        assert_loaded(dest, artifact, dest_name(source))
    code, report, _ = load(saved, dest)
    assert code == 0 and set(statuses(report).values()) == {"present"}


def test_inspect_lists_names_digests_and_sizes(public: PublicImages, saved: Path) -> None:
    result = run_mirror("inspect", "--input", str(saved), "--output", "json")
    assert result.returncode == 0, result.stderr
    contents = json.loads(result.stdout)
    assert contents["complete"] and contents["format"] == "tar" and contents["lock_entries"] == 4
    images = {i["name"]: i for i in contents["images"]}
    assert {n: i["digest"] for n, i in images.items()} == {
        s: a.digest for s, a in public.artifacts.items()
    }
    assert images[SPIRE]["size"] == sum(sizes_of(public.artifacts[SPIRE]).values())
    assert images[SPIRE]["platforms"] == ["linux/amd64", "linux/arm64"]
    text = run_mirror("inspect", "--input", str(saved))
    assert text.returncode == 0 and f"{SIDECAR} {public.artifacts[SIDECAR].digest} oci image" in (
        text.stdout
    )


def test_skopeo_reads_our_tar_and_directory(
    public: PublicImages, saved: Path, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    result = save(public, public.write_lock(tmp_path / "images.lock"), f"{layout}/")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in layout.iterdir()} == {
        "blobs",
        "images.lock",
        "index.json",
        "oci-layout",
    }
    dest = make_registry("basic")
    for n, source in enumerate(OCI_TYPED):
        artifact = public.artifacts[source]
        for where in (f"oci-archive:{saved}:{source}", f"oci:{layout}:{source}"):
            assert run_skopeo("inspect", "--raw", where).stdout == artifact.manifest
            target = f"skopeo{n}/{where.split(':')[0]}:v1"
            skopeo_copy(where, (dest, target), preserve_digests=True)
            assert_loaded(dest, artifact, target)
    # Docker-typed images stay byte-exact in the layout (skopeo 1.9 does not resolve them).
    nats = public.artifacts["docker.io/library/nats:2.9-alpine"]
    stored = layout / "blobs" / "sha256" / nats.digest.removeprefix("sha256:")
    assert stored.read_bytes() == nats.manifest


def test_load_layouts_skopeo_wrote(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    def remote(source: str) -> tuple[Registry, str]:
        return public.registry, f"{public.prefix}/{source}"

    layout, archive, tools = tmp_path / "layout", tmp_path / "skopeo.tar", tmp_path / "tools"
    skopeo_copy(remote(SPIRE), f"oci:{layout}:{SPIRE}", preserve_digests=True)
    skopeo_copy(remote(SIDECAR), f"oci:{layout}:nginx-mesh-sidecar:2.0.0", preserve_digests=True)
    skopeo_copy(remote(SPIRE), f"oci-archive:{archive}:{SPIRE}", preserve_digests=True)
    skopeo_copy(remote(SIDECAR), f"oci:{tools}:2.0.0", preserve_digests=True)  # a bare tag
    dest = make_registry("basic")
    for path, loaded in [
        (layout, {"nsm/spire-agent:1.5.6": SPIRE, "nsm/nginx-mesh-sidecar:2.0.0": SIDECAR}),
        (archive, {"nsm/spire-agent:1.5.6": SPIRE}),
        (tools, {"nsm/tools:2.0.0": SIDECAR}),
    ]:
        code, report, result = load(path, dest)
        assert code == 0, result.stderr
        assert len(report["images"]) == len(loaded)
        for name, source in loaded.items():
            assert_loaded(dest, public.artifacts[source], name)
    skopeo_copy(remote(SIDECAR), f"oci:{layout}", preserve_digests=True)  # an unnamed entry
    code, _, result = load(layout, dest)
    assert code == 2 and "has no ref name annotation" in one_error_line(result)


def docker_save_oci_archive(path: Path, image: Image, repository: str, tag: str) -> Path:
    """A tar shaped as ``docker save`` of Docker 25+ writes it: an OCI layout whose index names
    the image by a bare tag, with Docker's ``manifest.json`` and ``repositories`` beside it and
    the legacy v1 JSON of the layer as an unreferenced blob."""
    legacy = json.dumps({"id": "0" * 64, "created": "1970-01-01T00:00:00Z"}).encode()
    blobs = {b.digest: b.data for b in image.blobs}
    blobs |= {image.digest: image.manifest, sha256(legacy): legacy}
    entry = {
        "mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest),
        "annotations": {"io.containerd.image.name": f"{repository}:{tag}", REF_NAME: tag},
    }  # fmt: skip
    manifest = {
        "Config": f"blobs/sha256/{image.config.digest.removeprefix('sha256:')}",
        "RepoTags": [f"{repository.removeprefix('docker.io/library/')}:{tag}"],
        "Layers": [f"blobs/sha256/{b.digest.removeprefix('sha256:')}" for b in image.layers],
    }
    files = {
        **{f"blobs/sha256/{d.removeprefix('sha256:')}": data for d, data in sorted(blobs.items())},
        "index.json": json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        ),
        "manifest.json": json.dumps([manifest]),
        "oci-layout": '{"imageLayoutVersion": "1.0.0"}',
        "repositories": json.dumps({repository: {tag: "0" * 64}}),
    }
    with tarfile.open(path, "w") as tar:
        for directory in ("blobs/", "blobs/sha256/"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_inspect_and_load_read_a_docker_25_save(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    """Docker 25+ saves an OCI layout with Docker's manifest.json and repositories beside it."""
    image = make_image("docker-25-save", [3000, 2000])
    archive = docker_save_oci_archive(tmp_path / "meshtool.tar", image, "meshtool", "1.0")
    inspected = run_mirror("inspect", "--input", str(archive), "--output", "json")
    assert inspected.returncode == 0, inspected.stderr
    contents = json.loads(inspected.stdout)
    assert contents["complete"]
    assert [(i["name"], i["digest"]) for i in contents["images"]] == [("1.0", image.digest)]
    dest = make_registry("basic")
    code, report, result = load(archive, dest)
    assert code == 0, result.stderr
    assert statuses(report) == {"docker.io/library/meshtool:1.0": "copied"}
    assert_loaded(dest, image, "nsm/meshtool:1.0")


def test_flipped_byte_fails_that_image_only(
    public: PublicImages, saved: Path, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    sidecar = public.artifacts[SIDECAR]
    assert isinstance(sidecar, Image)
    own = sidecar.layers[-1]  # not shared with any other image
    archive = tmp_path / "flipped.tar"
    archive.write_bytes(saved.read_bytes())
    with tarfile.open(archive) as tar:
        where = tar.getmember(f"blobs/sha256/{own.digest.removeprefix('sha256:')}")
    with archive.open("r+b") as handle:
        handle.seek(where.offset_data + where.size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))
    dest = make_registry("basic")
    code, report, _ = load(archive, dest)
    assert code == 1
    failed = {i["source"]: i for i in report["images"] if i["status"] == "failed"}
    assert list(failed) == [SIDECAR]
    assert "digest mismatch" in failed[SIDECAR]["error"]
    assert not tag_exists(dest, dest_name(SIDECAR))
    with registry_client(dest) as client:
        assert client.head(f"/v2/nsm/nginx-mesh-sidecar/blobs/{own.digest}").status_code == 404
    for source, artifact in public.artifacts.items():
        if source != SIDECAR:
            assert_loaded(dest, artifact, dest_name(source))


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "absolute"])
def test_unsafe_tar_is_refused_before_anything_is_sent(
    kind: str, saved: Path, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.tar"
    archive.write_bytes(saved.read_bytes())
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo({"dotdot": "../evil", "absolute": "/tmp/evil"}.get(kind, "link"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    dest = make_registry("basic")
    mark = dest.mark()
    code, _, result = load(archive, dest)
    assert code == 2
    assert "unsafe member" in one_error_line(result)
    assert dest.requests(mark) == []  # not even a ping


def test_broken_archives_are_named_without_traceback(
    public: PublicImages, saved: Path, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("basic")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    docker_save = tmp_path / "docker-save.tar"
    with tarfile.open(docker_save, "w") as tar:
        for name in ("manifest.json", "repositories", "abc/layer.tar"):
            tar.addfile(tarfile.TarInfo(name))
    bad_index = rewrite_tar(saved, tmp_path / "bad-index.tar", replace={"index.json": b"{]"})
    for archive, message in [
        (truncated, "truncated or corrupt tar"),
        (docker_save, "not an OCI image layout: no oci-layout or index.json"),
        (bad_index, "index.json is not valid JSON"),
        (tmp_path / "absent.tar", "no such file or directory"),
    ]:
        mark = dest.mark()
        code, _, result = load(archive, dest)
        assert code == 2 and message in one_error_line(result), result.stderr
        assert dest.requests(mark) == []
        inspected = run_mirror("inspect", "--input", str(archive))
        assert inspected.returncode == 2 and message in one_error_line(inspected)

    own = public.artifacts[SIDECAR]
    assert isinstance(own, Image)
    gone = f"blobs/sha256/{own.layers[-1].digest.removeprefix('sha256:')}"
    missing = rewrite_tar(saved, tmp_path / "missing.tar", drop=frozenset({gone}))
    code, report, _ = load(missing, dest)
    assert code == 1
    errors = {i["source"]: i["error"] for i in report["images"] if i["status"] == "failed"}
    assert list(errors) == [SIDECAR] and "is missing from the archive" in errors[SIDECAR]
    inspected = run_mirror("inspect", "--input", str(missing))
    assert inspected.returncode == 1 and f"missing: {own.layers[-1].digest}" in inspected.stdout


def test_save_with_a_failed_image(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    lock = public.write_lock(tmp_path / "images.lock", [SPIRE, "gcr.io/spiffe-io/absent:1.0"])
    result = save(public, lock, tmp_path / "out.tar")
    assert result.returncode == 1
    assert "out.tar: not written as images failed" in result.stderr
    assert not (tmp_path / "out.tar").exists() and (tmp_path / ".out.tar.partial").is_dir()

    layout = tmp_path / "dir"
    assert save(public, lock, f"{layout}/").returncode == 1
    inspected = run_mirror("inspect", "--input", str(layout))
    assert inspected.returncode == 1
    assert "not in the archive: gcr.io/spiffe-io/absent:1.0" in inspected.stdout
    dest = make_registry("basic")
    code, report, _ = load(layout, dest)
    assert code == 1
    assert statuses(report) == {SPIRE: "copied", "gcr.io/spiffe-io/absent:1.0": "failed"}
    assert "absent:1.0: not in the archive" in report["images"][1]["error"]


def test_archived_lock_is_checked_and_platform_subsets_load(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    lock = public.write_lock(tmp_path / "images.lock", [SPIRE, SIDECAR])
    layout = tmp_path / "subset"
    saved_report = tmp_path / "save.json"
    result = save(
        public, lock, f"{layout}/", "--platform", "linux/arm64", "--report", str(saved_report)
    )
    assert result.returncode == 0, result.stderr
    skipped = {i["source"]: i["status"] for i in json.loads(saved_report.read_text())["images"]}
    assert skipped == {SPIRE: "copied", SIDECAR: "skipped"}  # the sidecar is amd64 only
    saved_lock = parse_lock((layout / "images.lock").read_text(), "saved")
    assert [(str(e.source), [str(p) for p in e.platforms]) for e in saved_lock.entries] == [
        (SPIRE, ["linux/arm64"])
    ]
    dest = make_registry("basic")
    code, report, result = load(layout, dest)
    assert code == 0, result.stderr
    spire = public.artifacts[SPIRE]
    assert isinstance(spire, Index)
    raw = skopeo_raw(dest, "nsm/spire-agent:1.5.6")
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == [spire.images[1].digest]

    text = (layout / "images.lock").read_text()
    other = "sha256:" + "0" * 64
    (layout / "images.lock").write_text(text.replace('platforms = ["linux/arm64"]\n', "", 1)
                                        .replace(spire.digest, other))  # fmt: skip
    code, report, _ = load(layout, make_registry("basic"))
    assert code == 1
    assert f"its images.lock says {other}" in report["images"][0]["error"]


def test_load_checks_the_archive_against_the_lock_the_user_trusts(
    anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    public = PublicImages(anon_registry, f"trusted-{uuid.uuid4().hex[:8]}")
    app, tool, extra = "quay.io/team/app:1", "quay.io/team/tool:1", "quay.io/team/extra:1"
    public.add(app, make_image("trusted-app", [2000]))
    public.add(tool, make_image("trusted-tool", [2000]))
    trusted = public.write_lock(tmp_path / "trusted.lock")
    pinned = run_mirror("lock", "--lock", str(trusted), *public.endpoint_args())
    assert pinned.returncode == 0, pinned.stderr
    locked = public.artifacts[app].digest
    public.add(app, make_image("swapped-app", [2000]))  # the tag moves after the lock was made
    public.add(extra, make_image("trusted-extra", [2000]))
    archive = tmp_path / "nsm-images.tar"
    saved = save(public, public.write_lock(tmp_path / "images.lock"), archive)
    assert saved.returncode == 0, saved.stderr  # the archive's own lock agrees with it

    dest = make_registry("basic")
    code, report, result = load(archive, dest, "--lock", str(trusted))
    assert code == 1, result.stderr
    items = {i["source"]: i for i in report["images"]}
    assert items[tool]["status"] == "copied"
    assert items[app]["status"] == "failed"
    swapped = public.artifacts[app].digest
    assert f"the archive holds {swapped}, {trusted} says {locked}" in items[app]["error"]
    assert items[extra]["status"] == "failed" and f"not in {trusted}" in items[extra]["error"]
    assert not tag_exists(dest, "nsm/app:1") and not tag_exists(dest, "nsm/extra:1")


def test_load_with_platform_pushes_only_that_platform(
    public: PublicImages, saved: Path, make_registry: RegistryFactory
) -> None:
    dest = make_registry("basic")
    code, report, result = load(saved, dest, "--platform", "linux/arm64")
    lacking = {
        source
        for source, artifact in public.artifacts.items()
        if isinstance(artifact, Index)
        and all(image.platform[:2] != ("linux", "arm64") for image in artifact.images)
    }
    assert lacking and SPIRE not in lacking
    assert code == 1, result.stderr
    for source, item in {i["source"]: i for i in report["images"]}.items():
        if source in lacking:
            assert "no entry for platform(s) linux/arm64" in item["error"]
            assert not tag_exists(dest, dest_name(source))
        elif isinstance(public.artifacts[source], Image):  # all amd64
            assert item["status"] == "skipped", item
            assert "single-platform image for linux/amd64, not linux/arm64" in item["notes"][-1]
            assert not tag_exists(dest, dest_name(source))
        else:
            assert item["status"] == "copied", item
    spire = public.artifacts[SPIRE]
    assert isinstance(spire, Index)
    raw = skopeo_raw(dest, "nsm/spire-agent:1.5.6")
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == [spire.images[1].digest]
    by_source = {i["source"]: i for i in report["images"]}
    assert any("platform subset" in note for note in by_source[SPIRE]["notes"])
    with registry_client(dest) as client:
        amd64_only = set(blobs_of(spire.images[0])) - set(blobs_of(spire.images[1]))
        assert amd64_only
        for digest in amd64_only:
            assert client.head(f"/v2/nsm/spire-agent/blobs/{digest}").status_code == 404
    code, report, _ = load(saved, dest, "--platform", "linux/arm64")
    assert code == 1 and statuses(report)[SPIRE] == "present"


def test_load_to_docker_takes_one_platform(saved: Path) -> None:
    result = run_mirror(
        "load", "--input", str(saved), "--to-docker",
        "--platform", "linux/amd64", "--platform", "linux/arm64",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--to-docker loads one platform per image" in one_error_line(result)


def test_render_lock_round_trips() -> None:
    entries = (
        LockEntry(parse_reference(SPIRE), "spire", "sha256:" + "a" * 64,
                  (Platform("linux", "arm", "v7"),), "openshift"),
        LockEntry(parse_reference("nats:2.9-alpine"), 'quoted "component"'),
    )  # fmt: skip
    assert parse_lock(render_lock(entries), "x").entries == entries


def sparse_archive(path: Path, size: int) -> None:
    """A tar layout of one image with a ``size``-byte layer that is a hole (never written).

    The layer's digest is not that of its (all-zero) bytes: only a reader that hashes blob
    contents would notice.
    """
    layer = {"mediaType": OCI_LAYER, "digest": sha256(b"not these bytes"), "size": size}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [layer],
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
    }).encode()  # fmt: skip
    top = {"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
           "annotations": {REF_NAME: "example.com/big:1"}}  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}).encode()
    with path.open("wb") as handle:
        members: list[tuple[str, bytes | int]] = [
            ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
            ("index.json", index),
            (f"blobs/sha256/{sha256(config)[7:]}", config),
            (f"blobs/sha256/{sha256(manifest)[7:]}", manifest),
            (f"blobs/sha256/{layer['digest'][7:]}", size),  # type: ignore[index]
        ]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            handle.write(info.tobuf(tarfile.PAX_FORMAT))
            if isinstance(data, int):
                handle.seek(data + (-data % 512), os.SEEK_CUR)
            else:
                handle.write(data + b"\0" * (-len(data) % 512))
        handle.write(b"\0" * 1024)


def bytes_read() -> int:
    """``rchar`` of this process, which includes the children it has reaped."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_inspect_reads_no_blob(tmp_path: Path) -> None:
    archive = tmp_path / "big.tar"
    sparse_archive(archive, 1 << 30)
    assert archive.stat().st_size > 1 << 30 and archive.stat().st_blocks * 512 < 1 << 20
    before = bytes_read()
    result = run_mirror("inspect", "--input", str(archive), "--output", "json")
    read = bytes_read() - before
    assert result.returncode == 0, result.stderr
    image = json.loads(result.stdout)["images"][0]
    assert image["name"] == "example.com/big:1" and image["size"] > 1 << 30
    assert not image["missing"] and not image["error"]  # listed, never hashed
    assert read < 64 << 20, f"inspect read {read} bytes of a 1 GiB archive"


# --- interrupted saves ------------------------------------------------------------------------


class SlowBlobProxy(http.server.ThreadingHTTPServer):
    """Forwards registry reads, trickling one blob out at 1 MiB per 0.2 s."""

    daemon_threads = True

    def __init__(self, upstream: str, slow: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.slow = upstream, slow
        self.trickling = threading.Event()
        self.client = httpx.Client(base_url=upstream, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: SlowBlobProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        request = self.server.client.build_request(self.command, self.path, headers=headers)
        upstream = self.server.client.send(request, stream=True)
        try:
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.end_headers()
            slow = self.path.endswith(self.server.slow)
            for chunk in upstream.iter_raw(1 << 20):
                if self.command == "HEAD":
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
                if slow:
                    self.server.trickling.set()
                    time.sleep(0.2)
        finally:
            upstream.close()


@pytest.fixture
def slow_public(anon_registry: Registry) -> Iterator[tuple[PublicImages, SlowBlobProxy]]:
    """A big image and a small one; the big layer comes slowly through a proxy."""
    public = PublicImages(anon_registry, f"slow-{uuid.uuid4().hex[:8]}")
    big = make_image("big", [8 << 20, 2000])
    public.add("ghcr.io/example/big:1", big)
    public.add("ghcr.io/example/small:1", make_image("small", [3000]))
    proxy = SlowBlobProxy(anon_registry.url, big.layers[0].digest)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield public, proxy
    proxy.shutdown()
    proxy.client.close()


def blob_gets(registry: Registry, prefix: str, since: int) -> list[str]:
    return [
        r.path.rsplit("/", 1)[-1]
        for r in registry.requests(since)
        if r.method == "GET" and r.path.startswith(f"/v2/{prefix}/") and "/blobs/" in r.path
    ]


def test_saving_over_an_archive_fetches_only_what_it_lacks(
    public: PublicImages, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    output = tmp_path / "nsm.tar"
    first = save(public, public.write_lock(tmp_path / "a.lock", [SPIRE]), output)
    assert first.returncode == 0, first.stderr
    mark = public.registry.mark()
    both = save(public, public.write_lock(tmp_path / "b.lock", [SPIRE, SIDECAR]), output)
    assert both.returncode == 0, both.stderr
    fetched = set(blob_gets(public.registry, public.prefix, mark))
    spire, sidecar = public.artifacts[SPIRE], public.artifacts[SIDECAR]
    manifests = {sidecar.digest, *(i.digest for i in getattr(sidecar, "images", ()))}
    assert fetched == blobs_of(sidecar) - blobs_of(spire) - manifests
    assert not (tmp_path / ".nsm.tar.partial").exists()
    dest = make_registry("basic")
    code, report, result = load(output, dest)
    assert code == 0 and statuses(report) == {SPIRE: "copied", SIDECAR: "copied"}, result.stderr
    assert_loaded(dest, sidecar, dest_name(SIDECAR))

    only = save(public, public.write_lock(tmp_path / "c.lock", [SIDECAR]), output)
    assert only.returncode == 0, only.stderr
    with tarfile.open(output) as tar:
        kept = {n.removeprefix("blobs/sha256/") for n in tar.getnames() if "sha256/" in n}
    assert kept == {d.removeprefix("sha256:") for d in blobs_of(sidecar)}


def test_a_bad_blob_in_the_archive_saved_over_is_fetched_again(
    public: PublicImages, tmp_path: Path
) -> None:
    lock = public.write_lock(tmp_path / "images.lock", [SIDECAR])
    good = tmp_path / "good.tar"
    assert save(public, lock, good).returncode == 0
    sidecar = public.artifacts[SIDECAR]
    assert isinstance(sidecar, Image)
    layer = sidecar.layers[0]
    member = "blobs/sha256/" + layer.digest.removeprefix("sha256:")
    with tarfile.open(good) as tar:
        data = bytearray(tar.extractfile(member).read())  # type: ignore[union-attr]
    data[0] ^= 0xFF
    output = rewrite_tar(good, tmp_path / "out.tar", replace={member: bytes(data)})
    mark = public.registry.mark()
    assert save(public, lock, output).returncode == 0
    assert blob_gets(public.registry, public.prefix, mark) == [layer.digest]
    with tarfile.open(output) as tar:
        assert sha256(tar.extractfile(member).read()) == layer.digest  # type: ignore[union-attr]


@pytest.mark.parametrize(("signum", "form"), [(signal.SIGINT, "tar"), (signal.SIGKILL, "dir")])
def test_interrupted_save_looks_incomplete_and_resumes(
    slow_public: tuple[PublicImages, SlowBlobProxy], tmp_path: Path, signum: int, form: str
) -> None:
    public, proxy = slow_public
    lock = public.write_lock(tmp_path / "images.lock")
    output = tmp_path / "out.tar" if form == "tar" else tmp_path / "out"
    work = tmp_path / ".out.tar.partial" if form == "tar" else output
    target = f"{output}/" if form == "dir" else str(output)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    endpoint = f"ghcr.io={proxy.url}/{public.prefix}/ghcr.io"
    cmd = [sys.executable, "-m", "mirror", "save", "--lock", str(lock), "--output", target,
           "--endpoint", endpoint]  # fmt: skip
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert proxy.trickling.wait(60), "the slow blob was never requested"
    time.sleep(0.3)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == (130 if signum == signal.SIGINT else -9), stderr
    assert "Traceback" not in stderr
    assert not output.is_file()
    assert not (work / "index.json").exists() and not (work / "oci-layout").exists()
    kept = {p.name for p in (work / "blobs" / "sha256").iterdir() if not p.name.startswith(".")}
    everything = set().union(*(blobs_of(a) for a in public.artifacts.values()))
    missing = {d for d in everything if d.removeprefix("sha256:") not in kept}
    big = public.artifacts["ghcr.io/example/big:1"]
    assert isinstance(big, Image)
    assert big.layers[0].digest in missing and len(missing) < len(everything)

    mark = public.registry.mark()
    result = save(public, lock, target)
    assert result.returncode == 0, result.stderr
    layer_gets = set(blob_gets(public.registry, public.prefix, mark))
    manifests = {a.digest for a in public.artifacts.values()}
    assert layer_gets == missing - manifests  # manifests are fetched via /manifests/
    assert not list(tmp_path.rglob(".*.part"))
    if form == "tar":
        assert output.is_file() and not work.exists()
        return
    mark = public.registry.mark()
    result = save(public, lock, target)
    assert result.returncode == 0 and "2 present" in result.stdout
    assert blob_gets(public.registry, public.prefix, mark) == []
