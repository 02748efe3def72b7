"""The OCI image layout transport: tar safety and integrity, in-place reads, the writer."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.errors import ArchiveError, DigestMismatch, InvalidReference
from mirror.image.manifest import Descriptor, parse_manifest
from mirror.image.reference import parse_reference
from mirror.transports.base import CHUNK
from mirror.transports.layout import (
    LayoutWriter,
    TarStorage,
    entry_reference,
    open_layout,
    pack_layout,
    packed_layout,
)
from tests.imagefactory import make_image, make_index, write_oci_layout

REF_NAME = "org.opencontainers.image.ref.name"


@pytest.fixture
def layout_dir(tmp_path: Path) -> Path:
    """A layout with an OCI index and a Docker image sharing a base layer."""
    base = make_image("base", [5000]).layers
    amd = make_image("amd", [3000], base=base)
    index = make_index([amd, make_image("arm", [2000], base=base, platform=("linux", "arm64"))])
    refs = {
        "gcr.io/spiffe-io/spire-agent:1.5.6": index,
        "docker.io/library/nats:2.9-alpine": make_image("nats", [4000], base=base, fmt="docker"),
    }
    return write_oci_layout(tmp_path / "layout", refs)


def build_tar(path: Path, layout: Path | None, *extra: tuple[tarfile.TarInfo, bytes]) -> Path:
    """A tar of ``layout``'s files (if given) plus ``extra`` members."""
    with tarfile.open(path, "w") as tar:
        if layout is not None:
            for file in sorted(layout.rglob("*")):
                tar.add(file, file.relative_to(layout).as_posix(), recursive=False)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = "") -> tuple[
    tarfile.TarInfo, bytes
]:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
    return info, data


def test_pack_is_reproducible_and_read_in_place(layout_dir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    pack_layout(packed_layout(layout_dir), first)
    pack_layout(packed_layout(layout_dir), second)
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size == packed_layout(layout_dir).size  # known before writing
    with tarfile.open(first) as tar:
        names = tar.getnames()
    assert names[:5] == ["oci-layout", "index.json", "blobs", "blobs/sha256", names[4]]
    files = sorted(p.name for p in (layout_dir / "blobs" / "sha256").iterdir())
    assert sorted(n.rsplit("/", 1)[-1] for n in names[4:]) == files  # each blob once
    reader = open_layout(first)
    storage = reader.storage
    assert isinstance(storage, TarStorage)
    raw = first.read_bytes()
    for name in files:
        where = storage.members[f"blobs/sha256/{name}"]
        data = raw[where.offset : where.offset + where.size]
        assert data == (layout_dir / "blobs" / "sha256" / name).read_bytes()
    names_seen = {str(e.reference) for e in reader.entries}
    assert names_seen == {"gcr.io/spiffe-io/spire-agent:1.5.6", "docker.io/library/nats:2.9-alpine"}
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_tar_blob_streams_in_fixed_chunks(tmp_path: Path) -> None:
    image = make_image("big", [3 * CHUNK + 123])
    layout = write_oci_layout(tmp_path / "big", {"example.com/big:1": image})
    pack_layout(packed_layout(layout), tmp_path / "big.tar")
    reader = open_layout(tmp_path / "big.tar")
    layer = image.layers[0]
    ref = parse_reference("example.com/big:1")
    with reader.open_blob(ref, Descriptor(layer.media_type, layer.digest, layer.size)) as chunks:
        sizes = [len(c) for c in chunks]
    assert max(sizes) == CHUNK and sum(sizes) == layer.size
    manifest = reader.get_manifest(ref, None)
    assert manifest.digest == image.digest and manifest.raw == image.manifest


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (member("../evil"), "unsafe member '../evil'"),
        (member("blobs/../../evil"), "unsafe member"),
        (member("/etc/cron.d/evil"), "unsafe member '/etc/cron.d/evil'"),
        (member("blobs/sha256/" + "a" * 64, tarfile.SYMTYPE, link="/etc/shadow"), "links"),
        (member("evil", tarfile.LNKTYPE, link="index.json"), "links"),
        (member("dev", tarfile.CHRTYPE), "devices"),
        (member("fifo", tarfile.FIFOTYPE), "devices"),
        (member("etc", tarfile.DIRTYPE), "unexpected directory"),
        (member("notes.txt"), "unexpected member notes.txt"),
        (member("blobs/sha256/ABC"), "unexpected member blobs/sha256/ABC"),
        (member("index.json"), "appears twice"),
    ],
)
def test_unsafe_or_foreign_members_are_refused(
    layout_dir: Path, tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes], message: str
) -> None:
    archive = build_tar(tmp_path / "bad.tar", layout_dir, bad)
    with pytest.raises(ArchiveError, match=message.replace("(", r"\(")):
        open_layout(archive)


def test_docker_save_tar_is_not_a_layout(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "docker.tar", None, member("manifest.json", data=b"[]"),
                        member("repositories", data=b"{}"))  # fmt: skip
    with pytest.raises(ArchiveError, match=r"not an OCI image layout.*manifest\.json"):
        open_layout(archive)


@pytest.mark.parametrize("keep", [0.3, 0.6, "mid-header", "mid-data", "last-member", "no-trailer"])
def test_truncated_tar_is_refused(layout_dir: Path, tmp_path: Path, keep: float | str) -> None:
    full = tmp_path / "full.tar"
    pack_layout(packed_layout(layout_dir), full)
    data = full.read_bytes()
    with tarfile.open(full) as tar:
        last = tar.getmembers()[-1]
    cut = {
        "mid-header": last.offset + 100,
        "mid-data": last.offset_data + last.size // 2,
        "last-member": last.offset,  # a whole member and the end marker are gone
        "no-trailer": last.offset_data + last.size,  # data intact, end-of-archive missing
    }.get(str(keep)) or int(len(data) * float(keep))
    short = tmp_path / "short.tar"
    short.write_bytes(data[:cut])
    with pytest.raises(ArchiveError, match="truncated or corrupt tar"):
        open_layout(short)


def test_compressed_and_non_tar_files_are_named(layout_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    pack_layout(packed_layout(layout_dir), archive)
    gz = tmp_path / "a.tar.gz"
    gz.write_bytes(gzip.compress(archive.read_bytes()))
    with pytest.raises(ArchiveError, match="gzip-compressed; give the plain tar"):
        open_layout(gz)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x01" * 4096)
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        open_layout(junk)
    with pytest.raises(ArchiveError, match="no such file or directory"):
        open_layout(tmp_path / "absent.tar")


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (b"{not json", "index.json is not valid JSON"),
        (b'{"schemaVersion": 2}', "not an OCI index"),
        (b'{"manifests": [{"digest": "sha256:1", "size": 1}]}', "index.json: .*digest"),
    ],
)
def test_bad_index_json(layout_dir: Path, index: bytes, message: str) -> None:
    (layout_dir / "index.json").write_bytes(index)
    with pytest.raises(ArchiveError, match=message):
        open_layout(layout_dir)


def test_oci_layout_marker_is_required(layout_dir: Path) -> None:
    (layout_dir / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(ArchiveError, match=r"unsupported imageLayoutVersion '2\.0\.0'"):
        open_layout(layout_dir)
    (layout_dir / "oci-layout").unlink()
    with pytest.raises(ArchiveError, match="no oci-layout file"):
        open_layout(layout_dir)


def test_duplicate_ref_names_are_refused(layout_dir: Path) -> None:
    index = json.loads((layout_dir / "index.json").read_text())
    index["manifests"][1]["annotations"][REF_NAME] = "gcr.io/spiffe-io/spire-agent:1.5.6"
    (layout_dir / "index.json").write_text(json.dumps(index))
    with pytest.raises(ArchiveError, match="entries 1 and 2 both name"):
        open_layout(layout_dir)


def test_symlinked_blob_in_a_directory_is_not_followed(layout_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    reader = open_layout(layout_dir)
    top = reader.entries[0].descriptor
    blob = layout_dir / "blobs" / "sha256" / top.digest.removeprefix("sha256:")
    blob.unlink()
    blob.symlink_to(secret)
    with pytest.raises(ArchiveError, match="not a regular file"):
        reader.get_manifest(parse_reference("gcr.io/spiffe-io/spire-agent:1.5.6"), None)


def test_corrupt_manifest_is_a_digest_mismatch(layout_dir: Path) -> None:
    reader = open_layout(layout_dir)
    top = reader.entries[0].descriptor
    blob = layout_dir / "blobs" / "sha256" / top.digest.removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes().replace(b"schemaVersion", b"schemaVersioN"))
    with pytest.raises(DigestMismatch, match="manifest digest mismatch"):
        reader.manifest(top.digest, "top")


@pytest.mark.parametrize(
    ("name", "layout", "expected"),
    [
        ("gcr.io/spiffe-io/spire-agent:1.5.6", "x", "gcr.io/spiffe-io/spire-agent:1.5.6"),
        ("nats:2.9-alpine", "x", "docker.io/library/nats:2.9-alpine"),
        ("library/nats", "x", "docker.io/library/nats:latest"),
        ("2.9-alpine", "nats", "docker.io/library/nats:2.9-alpine"),
        ("v1", "registry.local:5000/tools", "registry.local:5000/tools:v1"),
    ],
)
def test_ref_names(name: str, layout: str, expected: str) -> None:
    assert str(entry_reference(name, layout)) == expected


def test_bare_tag_under_an_unusable_layout_name() -> None:
    with pytest.raises(InvalidReference, match="bare tag and the layout name 'My Images'"):
        entry_reference("v1", "My Images")


def chunks_then_fail(data: bytes) -> Iterator[bytes]:
    yield data
    raise DigestMismatch("stream broke")


def test_writer_keeps_nothing_of_a_failed_blob_and_commits_last(tmp_path: Path) -> None:
    image = make_image("w", [1000])
    root = tmp_path / "out"
    writer = LayoutWriter(root)
    ref = parse_reference("example.com/w:1")
    layer = image.layers[0]
    desc = Descriptor(layer.media_type, layer.digest, layer.size)
    with pytest.raises(DigestMismatch):
        writer.put_blob(ref, desc, chunks_then_fail(layer.data))
    assert not writer.has_blob(ref, desc)
    assert not [p for p in (root / "blobs" / "sha256").iterdir()]
    for blob in image.blobs:
        writer.put_blob(ref, Descriptor(blob.media_type, blob.digest, blob.size), [blob.data])
    manifest = parse_manifest(image.manifest, image.media_type, image.digest)
    writer.put_manifest(ref, manifest, ref.tag)
    assert writer.head_manifest(ref) == Descriptor(
        image.media_type, image.digest, len(image.manifest)
    )
    assert sorted(p.name for p in root.iterdir()) == ["blobs"]  # not a layout until commit
    writer.commit("version = 1\n")
    assert sorted(p.name for p in root.iterdir()) == [
        "blobs",
        "images.lock",
        "index.json",
        "oci-layout",
    ]
    reader = open_layout(root)
    assert [(e.name, e.descriptor.digest) for e in reader.entries] == [(str(ref), image.digest)]
    assert reader.lock_text == "version = 1\n"


def test_writer_adopts_a_layout_and_sees_missing_blobs(layout_dir: Path) -> None:
    ref = parse_reference("docker.io/library/nats:2.9-alpine")
    head = LayoutWriter(layout_dir).head_manifest(ref)
    assert head is not None
    config = json.loads(
        (layout_dir / "blobs" / "sha256" / head.digest.removeprefix("sha256:")).read_bytes()
    )["config"]["digest"]
    (layout_dir / "blobs" / "sha256" / config.removeprefix("sha256:")).unlink()
    assert LayoutWriter(layout_dir).head_manifest(ref) is None  # incomplete: fetch again


def test_writer_refuses_a_directory_that_is_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".bashrc").write_text("")
    with pytest.raises(ArchiveError, match=r"not an OCI image layout \(holds \.bashrc\)"):
        LayoutWriter(tmp_path / "home")


def test_reader_resolves_digest_references(layout_dir: Path) -> None:
    reader = open_layout(layout_dir)
    digest = reader.entries[1].descriptor.digest
    head = reader.head_manifest(parse_reference(f"docker.io/library/other@{digest}"))
    assert head is not None and head.digest == digest
    assert reader.head_manifest(parse_reference("docker.io/library/absent:1")) is None


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_huge_extension_headers_are_refused_unread(tmp_path: Path, kind: bytes) -> None:
    archive = tmp_path / "hostile.tar"
    info = tarfile.TarInfo("header")
    info.type, info.size = kind, 1 << 30  # tarfile would read all of it into memory
    with archive.open("wb") as handle:
        handle.write(info.tobuf(tarfile.USTAR_FORMAT))
        handle.seek(1 << 30, os.SEEK_CUR)
        handle.write(b"\0" * 1024)
    with pytest.raises(ArchiveError, match="extension header of 1073741824 bytes refused"):
        open_layout(archive)
