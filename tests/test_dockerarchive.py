"""The ``docker save`` / ``docker load`` tar format, without a daemon."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from mirror.errors import ArchiveError, DigestMismatch
from mirror.image.reference import parse_reference
from mirror.transports.dockerarchive import SavedImage, load_stream
from mirror.transports.layout import open_layout
from tests.imagefactory import Image, make_image, make_layer, sha256, write_oci_layout

NAME = "gcr.io/spiffe-io/spire-agent:1.5.6"


def layout_with(tmp_path: Path, image: Image) -> Path:
    return write_oci_layout(tmp_path / "layout", {NAME: image})


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def test_load_stream_is_a_docker_load_tar_of_the_stored_blobs(tmp_path: Path) -> None:
    base = make_layer("base", 5000)
    image = make_image("app", [3000, base], base=[base])  # a layer twice: stored once
    reader = open_layout(layout_with(tmp_path, image))
    ref = parse_reference(NAME)
    seen: list[int] = []
    tar = b"".join(
        load_stream(
            reader, ref, reader.get_manifest(ref, None), [NAME, "r.example/x:1"], seen.append
        )
    )
    files = members(tar)
    (entry,) = json.loads(files.pop("manifest.json"))
    assert entry["RepoTags"] == [NAME, "r.example/x:1"]
    assert files[entry["Config"]] == image.config.data
    assert [sha256(files[name]) for name in entry["Layers"]] == [b.digest for b in image.layers]
    assert len(files) == 1 + len({b.digest for b in image.layers})
    assert sum(seen) == sum(len(data) for data in files.values())


def test_load_stream_stops_at_a_corrupt_blob(tmp_path: Path) -> None:
    image = make_image("bad", [4000])
    layout = layout_with(tmp_path, image)
    blob = layout / "blobs" / "sha256" / image.layers[0].digest.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    reader = open_layout(layout)
    ref = parse_reference(NAME)
    produced = bytearray()
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        for chunk in load_stream(
            reader, ref, reader.get_manifest(ref, None), [NAME], lambda n: None
        ):
            produced += chunk
    assert b"manifest.json" not in produced


def docker_save_tar(path: Path, image: Image, oci_paths: bool = False) -> Path:
    """A tar as ``docker save`` writes it: uncompressed layers, a repeated one as a symlink
    (classic layout) or named once (OCI paths, as newer engines write)."""
    raw = [gzip.decompress(layer.data) for layer in image.layers]
    config = f"{image.config.digest[7:]}.json"
    names = []
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info, io.BytesIO(data))

        for number, data in enumerate(raw):
            first = raw.index(data)
            name = f"blobs/sha256/{sha256(data)[7:]}" if oci_paths else f"{number:03}/layer.tar"
            if first == number:
                add(name, data)
            elif not oci_paths:
                add(name, link=f"../{first:03}/layer.tar")
            names.append(name)
        add(config, image.config.data)
        add(
            "manifest.json",
            json.dumps([{"Config": config, "RepoTags": [NAME], "Layers": names}]).encode(),
        )
    return path


@pytest.mark.parametrize("oci_paths", [False, True], ids=["classic", "oci-paths"])
def test_saved_image_keeps_the_config_and_the_daemons_layers(
    tmp_path: Path, oci_paths: bool
) -> None:
    base = make_layer("base", 5000)
    image = make_image("saved", [3000, base], base=[base])
    saved = SavedImage(docker_save_tar(tmp_path / "saved.tar", image, oci_paths))
    ref = parse_reference(NAME)
    manifest = saved.get_manifest(ref, None)
    assert manifest.config is not None and manifest.config.digest == image.config.digest
    assert [layer.digest for layer in manifest.layers] == [b.diff_id for b in image.layers]
    assert {layer.media_type for layer in manifest.layers} == {
        "application/vnd.oci.image.layer.v1.tar"
    }
    for desc in (manifest.config, *manifest.layers):
        with saved.open_blob(ref, desc) as chunks:
            assert sha256(b"".join(chunks)) == desc.digest
    assert saved.head_manifest(ref).digest == manifest.digest  # type: ignore[union-attr]


def test_saved_image_refuses_what_docker_save_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / "not-saved.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArchiveError, match=r"not-saved\.tar: manifest\.json: not in the archive"):
        SavedImage(path)
