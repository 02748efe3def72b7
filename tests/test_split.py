"""Archives split to fit the medium: save --split-size, mirror split, loads from parts that check
every part first, and loads that resume (issue 26)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirror.cli.options import parse_size
from mirror.cli.render import size_text
from mirror.errors import InputError
from mirror.transports.parts import copy_into_parts, open_parts
from tests.faultproxy import ProxyFactory
from tests.imagefactory import OCI_LAYER, Blob, Image, make_image, registry_client, sha256
from tests.mirrorcli import PublicImages, publish_default_set, run_mirror, start_mirror
from tests.registries import Registry, RegistryFactory
from tests.skopeo import run_skopeo, skopeo_raw

WRITES = ("PUT", "POST", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    return publish_default_set(anon_registry)


def save(public: PublicImages, lock: Path, output: Path, *extra: str) -> Any:
    return run_mirror(
        "save", "--lock", str(lock), "--output", str(output), *public.endpoint_args(), *extra
    )


def load(archive: Path | str, dest: Registry, *extra: str) -> subprocess.CompletedProcess[str]:
    result = run_mirror(
        "load", "--input", str(archive), "--registry-server", f"{dest.host}/nsm", *extra
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def parts_of(archive: Path) -> list[Path]:
    return sorted(archive.parent.glob(archive.name + ".[0-9][0-9][0-9]"))


def concatenation(parts: list[Path], target: Path) -> Path:
    with target.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    return target


def digest_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def dest_name(source: str) -> str:
    return "nsm/" + source.rsplit("/", 1)[-1]


def writes(registry: Registry, since: int = 0) -> list[str]:
    return [f"{r.method} {r.path}" for r in registry.requests(since) if r.method in WRITES]


@pytest.fixture(scope="module")
def unsplit(public: PublicImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every public image saved once, unsplit."""
    root = tmp_path_factory.mktemp("unsplit")
    result = save(public, public.write_lock(root / "images.lock"), root / "nsm.tar")
    assert result.returncode == 0, result.stderr
    return root / "nsm.tar"


@pytest.fixture(scope="module")
def seven(public: PublicImages, unsplit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same lock saved in 7 parts (tests copy the parts before changing them)."""
    root = tmp_path_factory.mktemp("seven")
    size = -(-unsplit.stat().st_size // 7)
    lock = public.write_lock(root / "images.lock")
    result = save(public, lock, root / "nsm.tar", "--split-size", str(size))
    assert result.returncode == 0, result.stderr
    assert " in 7 parts (nsm.tar.001 … nsm.tar.007" in result.stdout
    return root / "nsm.tar"


def copy_parts(archive: Path, target: Path) -> Path:
    target.mkdir()
    for path in [*parts_of(archive), archive.with_name(archive.name + ".parts.json")]:
        (target / path.name).write_bytes(path.read_bytes())
    return target / archive.name


@pytest.mark.parametrize(
    ("text", "size"),
    [("4G", 4 * 10**9), ("4GiB", 4 * 2**30), ("700M", 700 * 10**6), ("100MB", 10**8),
     ("512k", 512_000), ("1.5GiB", 3 * 2**29), ("4096", 4096)],
)  # fmt: skip
def test_sizes_are_decimal_or_binary_as_written(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("junk", ["", "G", "4X", "-1M", "4 GB B", "0"])
def test_a_junk_size_is_one_line_and_exit_2(junk: str, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        parse_size(junk)
    result = run_mirror("split", "--input", str(tmp_path / "a.tar"), "--split-size", junk)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"Error: --split-size {junk!r}: ")


def test_a_directory_is_not_split(tmp_path: Path) -> None:
    result = run_mirror("save", "--output", f"{tmp_path}/layout/", "--split-size", "1M")
    assert result.returncode == 2 and "--split-size splits a tar, not a directory" in result.stderr
    assert result.stderr.count("\n") == 1


def test_parts_read_back_as_one_file_across_their_boundaries(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    listing = copy_into_parts(io.BytesIO(data), tmp_path / "a.tar", 999)
    assert [p.size for p in listing.parts] == [999] * 10 + [10]
    reader = open_parts(tmp_path / "a.tar.parts.json").open()
    assert reader.read(2500) == data[:2500]  # three parts in one read
    for offset, length in ((998, 3), (0, 10_000), (9_990, 100), (1998, 999)):
        reader.seek(offset)
        assert reader.read(length) == data[offset : offset + length]
    reader.seek(-5, io.SEEK_END)
    assert reader.read() == data[-5:] and reader.read(1) == b""


def test_the_live_display_shows_the_part_being_read() -> None:
    from rich.console import Console

    from mirror.cli.progress import LiveProgress

    screen = io.StringIO()
    live = LiveProgress(Console(file=screen, force_terminal=True, width=120), 1)
    live.part(3, 7, "nsm.tar.003")
    live.close()
    assert "part 3/7" in screen.getvalue()


def test_sizes_read_as_people_read_them() -> None:
    assert [size_text(n) for n in (0, 1023, 1536, 1288490188, 5 * 2**40)] == [
        "0 bytes", "1023 bytes", "1.5 KiB", "1.2 GiB", "5.0 TiB",
    ]  # fmt: skip


def test_split_save_concatenates_to_the_unsplit_save_and_loads(
    public: PublicImages,
    unsplit: Path,
    seven: Path,
    make_registry: RegistryFactory,
    tmp_path: Path,
) -> None:
    parts = parts_of(seven)
    listing = json.loads(seven.with_name("nsm.tar.parts.json").read_text())
    split = listing["split_size"]
    assert [p.name for p in parts] == [f"nsm.tar.{n:03d}" for n in range(1, 8)]
    assert all(p.stat().st_size == split for p in parts[:-1])
    assert 0 < parts[-1].stat().st_size <= split
    assert [(p["name"], p["size"], p["sha256"]) for p in listing["parts"]] == [
        (p.name, p.stat().st_size, digest_of(p)) for p in parts
    ]
    whole = concatenation(parts, tmp_path / "whole.tar")
    assert digest_of(whole) == digest_of(unsplit) == listing["sha256"]
    assert listing["size"] == unsplit.stat().st_size
    assert not seven.exists() and not list(seven.parent.glob(".*"))  # no temporary left

    spire = "gcr.io/spiffe-io/spire-agent:1.5.6"
    inspected = run_skopeo("inspect", "--raw", f"oci-archive:{whole}:{spire}")
    assert sha256(inspected.stdout) == public.artifacts[spire].digest

    dest = make_registry("anon")
    result = load(seven.with_name("nsm.tar.001"), dest)
    assert result.returncode == 0, result.stderr
    assert "reading nsm.tar.001 (part 1/7)" in result.stderr
    assert "reading nsm.tar.007 (part 7/7)" in result.stderr
    for source, artifact in public.artifacts.items():
        assert sha256(skopeo_raw(dest, dest_name(source))) == artifact.digest
    assert " uploaded, " in result.stdout and " bytes uploaded" not in result.stdout
    have = tmp_path / "have.json"
    listed = run_mirror(
        "inventory", "--registry-server", f"{dest.host}/nsm", "--input", str(seven.parent),
        "--output", str(have),
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert f"4 of 4 images at {dest.host}/nsm" in listed.stdout


@pytest.mark.parametrize("form", ["part", "list", "directory", "tar name"])
def test_inspect_reads_a_split_archive_in_each_form(seven: Path, form: str) -> None:
    given = {
        "part": seven.with_name("nsm.tar.001"),
        "list": seven.with_name("nsm.tar.parts.json"),
        "directory": seven.parent,
        "tar name": seven,  # not there: its parts are
    }[form]
    result = run_mirror("inspect", "--input", str(given), "--output", "json")
    assert result.returncode == 0, result.stderr
    contents = json.loads(result.stdout)
    assert contents["complete"] and contents["format"] == "tar in 7 parts"
    assert len(contents["images"]) == 4
    text = run_mirror("inspect", "--input", str(given))
    assert "OCI image layout (tar in 7 parts), 4 images, " in text.stdout
    assert " KiB; images.lock of 4 entries" in text.stdout


def test_mirror_split_equals_a_split_save(seven: Path, unsplit: Path, tmp_path: Path) -> None:
    archive = tmp_path / "nsm.tar"
    archive.write_bytes(unsplit.read_bytes())
    split = json.loads(seven.with_name("nsm.tar.parts.json").read_text())["split_size"]
    result = run_mirror("split", "--input", str(archive), "--split-size", str(split))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nsm.tar: ") and " in 7 parts (" in result.stdout
    ours = [*parts_of(archive), archive.with_name("nsm.tar.parts.json")]
    theirs = [*parts_of(seven), seven.with_name("nsm.tar.parts.json")]
    assert [p.name for p in ours] == [p.name for p in theirs]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ours, theirs, strict=True))
    again = run_mirror("split", "--input", str(archive), "--split-size", str(split * 2))
    assert again.returncode == 2 and "nsm.tar.005, nsm.tar.006, nsm.tar.007" in again.stderr
    many = run_mirror("split", "--input", str(archive), "--split-size", "100", "--force")
    assert many.returncode == 2 and "parts; at most 999, give a larger size" in many.stderr


def damage(kind: str, part: Path) -> None:
    if kind == "flipped":
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0x01
        part.write_bytes(bytes(data))
    elif kind == "deleted":
        part.unlink()
    else:
        part.write_bytes(part.read_bytes()[:-1000])


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("flipped", r"nsm\.tar\.004: sha256 sha256:[0-9a-f]{64}, expected sha256:[0-9a-f]{64}"),
        ("deleted", r"nsm\.tar\.004 missing"),
        ("truncated", r"nsm\.tar\.004: (\d+) bytes, expected (\d+)"),
    ],
)
def test_a_damaged_part_is_named_and_nothing_is_written(
    seven: Path, tmp_path: Path, make_registry: RegistryFactory, kind: str, message: str
) -> None:
    archive = copy_parts(seven, tmp_path / "copy")
    damage(kind, archive.with_name("nsm.tar.004"))
    dest = make_registry("anon")
    mark = dest.mark()
    for given in (archive.with_name("nsm.tar.001"), archive.parent):
        result = load(given, dest)
        assert result.returncode == 1, result.stderr
        line = result.stderr.strip()
        assert line.count("\n") == 0 and re.search(message, line), line
        assert "nsm.tar.003" not in line and "nothing was read" in line
    assert writes(dest, mark) == [] and dest.requests(mark) == []  # not even contacted
    inspected = run_mirror("inspect", "--input", str(archive.with_name("nsm.tar.parts.json")))
    assert inspected.returncode == 1 and re.search(message, inspected.stderr)
    if kind == "truncated":
        found = re.search(message, line)
        assert found and int(found.group(1)) == int(found.group(2)) - 1000


def test_stale_parts_are_refused_and_removed_with_force(
    public: PublicImages, seven: Path, tmp_path: Path
) -> None:
    archive = copy_parts(seven, tmp_path / "out")
    split = json.loads(seven.with_name("nsm.tar.parts.json").read_text())["split_size"]
    stale = archive.with_name("nsm.tar.009")
    stale.write_bytes(b"an earlier run's part")
    lock = public.write_lock(tmp_path / "images.lock")
    mark = public.registry.mark()
    refused = save(public, lock, archive, "--split-size", str(split))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"Error: {archive.parent}: nsm.tar.009 of an earlier run would be left beside this"
        " one; remove them or give --force"
    )
    assert stale.exists() and len(parts_of(archive)) == 8
    forced = save(public, lock, archive, "--split-size", str(split), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not stale.exists() and len(parts_of(archive)) == 7
    gets = [r for r in public.registry.requests(mark) if r.method == "GET" and "/blobs/" in r.path]
    assert gets == []  # every blob was taken from the parts saved over
    assert [p.read_bytes() for p in parts_of(archive)] == [p.read_bytes() for p in parts_of(seven)]

    unsplit = save(public, lock, archive)  # an unsplit save leaves no parts beside it either
    assert unsplit.returncode == 2 and "nsm.tar.001, " in unsplit.stderr
    assert "nsm.tar.parts.json of an earlier run" in unsplit.stderr
    assert save(public, lock, archive, "--force").returncode == 0
    assert archive.is_file() and parts_of(archive) == []


def test_split_size_works_with_a_delta(public: PublicImages, unsplit: Path, tmp_path: Path) -> None:
    spire = "gcr.io/spiffe-io/spire-agent:1.5.6"
    base = tmp_path / "base.tar"
    assert save(public, public.write_lock(tmp_path / "a.lock", [spire]), base).returncode == 0
    delta = tmp_path / "delta.tar"
    lock = public.write_lock(tmp_path / "b.lock")
    result = save(public, lock, delta, "--since", str(base), "--split-size", "100k")
    assert result.returncode == 0, result.stderr
    assert "delta.tar: " in result.stdout and ", a delta carrying " in result.stdout
    assert len(parts_of(delta)) >= 2
    plain = tmp_path / "plain.tar"
    assert save(public, lock, plain, "--since", str(base)).returncode == 0
    assert digest_of(concatenation(parts_of(delta), tmp_path / "cat.tar")) == digest_of(plain)


def wait_for(condition: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def blob_puts(registry: Registry, since: int = 0) -> list[str]:
    """The digests of blobs uploaded (the PUT closing each upload)."""
    return [
        r.params["digest"]
        for r in registry.requests(since)
        if r.method == "PUT" and "/blobs/uploads/" in r.path
    ]


SIDECAR = "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0"


def last_sidecar_layer(public: PublicImages) -> str:
    """The digest of the sidecar image's own (last) layer: a blob no other image has."""
    sidecar = public.artifacts[SIDECAR]
    assert isinstance(sidecar, Image)
    return sidecar.layers[-1].digest


def test_a_load_killed_halfway_resumes_with_only_the_rest(
    public: PublicImages, seven: Path, make_registry: RegistryFactory, proxies: ProxyFactory
) -> None:
    dest = make_registry("anon")
    proxy = proxies(dest.url)
    stalled = last_sidecar_layer(public)
    # Whatever asks about that blob first (a HEAD, or a mount once the registry has mounted one)
    hex_digest = stalled.removeprefix("sha256:")  # a mount's query has it URL-encoded
    stall = proxy.rule("stall", None, hex_digest, times=None, seconds=120)
    others = {b.digest for a in public.artifacts.values() for b in getattr(a, "blobs", ())}
    process = start_mirror(
        "load", "--input", str(seven.with_name("nsm.tar.001")),
        "--registry-server", f"{proxy.host}/nsm", "--jobs", "1",
    )  # fmt: skip
    try:
        wait_for(lambda: stall.injected >= 1 and len(blob_puts(dest)) >= 3)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "unfinished images were not tagged" in stderr
    with registry_client(dest) as client:
        assert client.head("/v2/nsm/nginx-mesh-sidecar/manifests/2.0.0").status_code == 404
    first = set(blob_puts(dest))
    assert stalled not in first and others - first

    proxy.clear()
    mark = dest.mark()
    result = load(seven.with_name("nsm.tar.001"), dest)
    assert result.returncode == 0, result.stderr
    uploaded = blob_puts(dest, mark)
    assert not set(uploaded) & first and len(uploaded) == len(set(uploaded))
    everything = {d for a in public.artifacts.values() for d in _blob_digests(a)}
    assert set(uploaded) == everything - first
    summary = re.search(r"2 present, .* (\d+) blobs \((.*)\) already there", result.stdout)
    assert summary and int(summary.group(1)) >= 1 and summary.group(2).endswith(" KiB")
    for source, artifact in public.artifacts.items():
        assert sha256(skopeo_raw(dest, dest_name(source))) == artifact.digest


def test_a_load_that_lost_its_connection_resumes_with_only_the_rest(
    public: PublicImages, seven: Path, make_registry: RegistryFactory, proxies: ProxyFactory
) -> None:
    dest = make_registry("anon")
    proxy = proxies(dest.url)
    lost = last_sidecar_layer(public)
    proxy.rule("stall", "PUT", f"digest={lost.replace(':', '(:|%3A)')}", times=None, seconds=0.05)
    fast = {"MESHLIFT_RETRY_ATTEMPTS": "2", "MESHLIFT_RETRY_INITIAL_WAIT": "0.01"}
    first = run_mirror(
        "load", "--input", str(seven.with_name("nsm.tar.001")),
        "--registry-server", f"{proxy.host}/nsm", env=fast,
    )  # fmt: skip
    assert first.returncode == 1, first.stderr
    assert "1 failed" in first.stdout and "Traceback" not in first.stderr
    with registry_client(dest) as client:
        assert client.head("/v2/nsm/nginx-mesh-sidecar/manifests/2.0.0").status_code == 404
    placed = set(blob_puts(dest))
    assert lost not in placed

    proxy.clear()
    mark = dest.mark()
    result = load(seven.with_name("nsm.tar.001"), dest)
    assert result.returncode == 0, result.stderr
    assert blob_puts(dest, mark) == [lost]
    assert "3 present" in result.stdout and " already there in " in result.stdout
    sidecar = public.artifacts[SIDECAR]
    assert sha256(skopeo_raw(dest, "nsm/nginx-mesh-sidecar:2.0.0")) == sidecar.digest


def _blob_digests(artifact: Any) -> set[str]:
    images = getattr(artifact, "images", None) or (artifact,)
    return {b.digest for image in images for b in image.blobs}


@pytest.mark.slow
def test_a_1_gib_archive_in_100m_parts(
    anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    """≥ 1 GiB saved with --split-size 100M: full parts, the unsplit save's bytes, read by
    skopeo, loaded digest for digest."""
    public = PublicImages(anon_registry, f"big-{uuid.uuid4().hex[:8]}")
    zeros = bytes(2**30)  # no compression anywhere on the way: zeros move as any bytes do
    layer = Blob(zeros, f"sha256:{hashlib.sha256(zeros).hexdigest()}", OCI_LAYER, None)
    public.add("registry.example/big/app:1", make_image("big", [layer, 4096]))
    del zeros, layer
    lock = public.write_lock(tmp_path / "images.lock")
    unsplit = tmp_path / "whole" / "big.tar"
    unsplit.parent.mkdir()
    assert save(public, lock, unsplit).returncode == 0
    archive = tmp_path / "split" / "big.tar"
    archive.parent.mkdir()
    result = save(public, lock, archive, "--split-size", "100M")
    assert result.returncode == 0, result.stderr
    parts = parts_of(archive)
    assert len(parts) == 11 and "big.tar: 1.0 GiB in 11 parts" in result.stdout
    assert all(p.stat().st_size == 100_000_000 for p in parts[:-1])
    assert 0 < parts[-1].stat().st_size <= 100_000_000
    whole = concatenation(parts, tmp_path / "cat.tar")
    assert digest_of(whole) == digest_of(unsplit)
    unsplit.unlink()
    name = "registry.example/big/app:1"
    raw = run_skopeo("inspect", "--raw", f"oci-archive:{whole}:{name}").stdout
    assert sha256(raw) == public.artifacts[name].digest
    whole.unlink()
    dest = make_registry("anon")
    loaded = load(parts[0], dest)
    assert loaded.returncode == 0, loaded.stderr
    assert "reading big.tar.011 (part 11/11)" in loaded.stderr
    assert sha256(skopeo_raw(dest, "nsm/app:1")) == public.artifacts[name].digest
    assert "1.0 GiB uploaded" in loaded.stdout
