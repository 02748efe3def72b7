"""Incremental air gap (issue 19): deltas since an archive or an inventory, refused without base."""

from __future__ import annotations

import json
import tarfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from mirror.image.lock import load_lock
from tests.faultproxy import ProxyFactory
from tests.imagefactory import (
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Blob,
    Image,
    Index,
    make_image,
    make_index,
    make_layer,
    push,
    registry_client,
    sha256,
)
from tests.mirrorcli import PublicImages, run_mirror
from tests.registries import Registry, RegistryFactory
from tests.skopeo import run_skopeo, skopeo_copy, skopeo_raw
from tests.test_airgap import assert_loaded, dest_name, load, one_error_line, sizes_of, statuses

NSM = "docker-registry.nginx.com/nsm/"
V1_SOURCES = [str(e.source) for e in load_lock(None).entries]  # the 14 images NSM needs
MOVED = {  # lock v2: two images move to new tags sharing the base layers
    NSM + "nginx-mesh-controller:2.0.0": NSM + "nginx-mesh-controller:2.0.1",
    NSM + "nginx-mesh-sidecar:2.0.0": NSM + "nginx-mesh-sidecar:2.0.1",
}
MOVED_AGAIN = {"gcr.io/spiffe-io/spire-agent:1.5.6": "gcr.io/spiffe-io/spire-agent:1.5.7"}
WRITES = ("PUT", "POST", "PATCH", "DELETE")
BASES = "io.meshlift.delta.bases"
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}"


@dataclass
class Releases:
    """Public images of three lock versions and the archives saved from them."""

    public: PublicImages
    locks: dict[str, Path]
    sources: dict[str, list[str]]
    archives: dict[str, Path]
    outputs: dict[str, str]

    def digests(self, artifacts: list[str]) -> dict[str, int]:
        """Every manifest and blob digest of ``artifacts`` with its size."""
        found: dict[str, int] = {}
        for source in artifacts:
            found.update(sizes_of(self.public.artifacts[source]))
        return found

    def manifests(self, artifacts: list[str]) -> set[str]:
        """The manifest digests of ``artifacts`` (indexes and their images)."""
        found = set()
        for source in artifacts:
            artifact = self.public.artifacts[source]
            images = artifact.images if isinstance(artifact, Index) else ()
            found |= {artifact.digest, *(i.digest for i in images)}
        return found


def artifact_for(source: str, base: list[Blob]) -> Image | Index:
    """A small image on the shared base (the SPIRE agent is multi-platform)."""
    if "spire-agent" in source:
        return make_index(
            [
                make_image(f"{source}/amd64", [12_000], base=base),
                make_image(f"{source}/arm64", [11_000], base=base, platform=("linux", "arm64")),
            ]
        )
    return make_image(source, [10_000], base=base)


def save(releases: Releases, lock: str, name: str, *extra: str) -> Path:
    """Save ``lock`` to ``name`` (next to the releases' archives; ending in / for a directory)."""
    output = releases.archives["v1"].parent / name
    where = f"{output}/" if name.endswith("/") else str(output)
    result = run_mirror(
        "save", "--lock", str(releases.locks[lock]), "--output", where,
        *releases.public.endpoint_args(), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    releases.outputs[name] = result.stdout
    return output


@pytest.fixture(scope="module")
def releases(anon_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """A (v1), B (v2 since A) and C (v3 since B) saved from a fake public registry."""
    root = tmp_path_factory.mktemp("releases")
    public = PublicImages(anon_registry, f"public-delta-{uuid.uuid4().hex[:8]}")
    base = [make_layer("delta-base", 40_000), make_layer("delta-base-2", 20_000)]
    v2 = [MOVED.get(s, s) for s in V1_SOURCES]
    v3 = [MOVED_AGAIN.get(s, s) for s in v2]
    for source in dict.fromkeys([*V1_SOURCES, *v2, *v3]):
        public.add(source, artifact_for(source, base))
    sources = {"v1": V1_SOURCES, "v2": v2, "v3": v3}
    locks = {v: public.write_lock(root / f"{v}.lock", s) for v, s in sources.items()}
    releases = Releases(public, locks, sources, {"v1": root / "nsm-a.tar"}, {})
    save(releases, "v1", "nsm-a.tar")
    releases.archives["v2"] = save(releases, "v2", "nsm-b.tar", "--since", str(root / "nsm-a.tar"))
    releases.archives["v3"] = save(releases, "v3", "nsm-c.tar", "--since", str(root / "nsm-b.tar"))
    return releases


def members(archive: Path) -> dict[str, bytes]:
    """The layout files and blob digests of a tar archive."""
    with tarfile.open(archive) as tar:
        return {
            i.name.replace("blobs/sha256/", "sha256:"): tar.extractfile(i).read()  # type: ignore[union-attr]
            for i in tar
            if i.isreg()
        }


def blobs(archive: Path) -> set[str]:
    return {name for name in members(archive) if name.startswith("sha256:")}


def index_of(archive: Path) -> dict[str, Any]:
    return dict(json.loads(members(archive)["index.json"]))


def identity(archive: Path) -> str:
    return sha256(members(archive)["index.json"])


def tags_at(dest: Registry, sources: list[str]) -> dict[str, str | None]:
    """The digest each image's destination tag has (None where there is no tag)."""
    found = {}
    with registry_client(dest) as client:
        for source in sources:
            repo, tag = dest_name(source).rsplit(":", 1)
            response = client.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            found[source] = response.headers.get("docker-content-digest")
    return found


def assert_all_loaded(releases: Releases, dest: Registry, version: str) -> None:
    sources = releases.sources[version]
    expected = {s: releases.public.artifacts[s].digest for s in sources}
    assert tags_at(dest, sources) == expected


def test_delta_holds_only_what_its_base_lacks(releases: Releases) -> None:
    a, b, c = (releases.archives[v] for v in ("v1", "v2", "v3"))
    moved = list(MOVED.values())
    new = set(releases.digests(moved)) - set(releases.digests(V1_SOURCES))
    assert blobs(a) == set(releases.digests(V1_SOURCES))
    assert blobs(b) == new  # the moved images' own layers, configs and manifests, nothing of A's
    assert not blobs(c) & (blobs(a) | blobs(b))
    index = index_of(b)
    assert [e["annotations"][REF_NAME] for e in index["manifests"]] == sorted(
        releases.sources["v2"]
    )
    bases = json.loads(index["annotations"][BASES])
    assert bases == [{"name": "nsm-a.tar", "identity": identity(a)}]
    relied = {
        d["digest"]
        for e in index["manifests"]
        for d in json.loads(e["annotations"]["io.meshlift.delta.relies-on"])
    }
    assert relied == set(releases.digests(releases.sources["v2"])) - new
    saved_by_a = sum(
        size for digest, size in releases.digests(V1_SOURCES).items() if digest in relied
    )
    assert f"nsm-a.tar ({identity(a)}) saved" in releases.outputs["nsm-b.tar"]
    assert f"({len(relied)} objects it holds)" in releases.outputs["nsm-b.tar"]
    assert f"{b}: " in releases.outputs["nsm-b.tar"]
    assert f"saved {saved_by_a / 1024:.1f} KiB (" in releases.outputs["nsm-b.tar"]
    assert 3 * b.stat().st_size < a.stat().st_size
    assert f"{a}: " in releases.outputs["nsm-a.tar"]  # a full save prints its size too


def test_base_then_delta_then_delta_loads_every_image(
    releases: Releases, make_registry: RegistryFactory
) -> None:
    dest = make_registry("basic")
    for version, copied in (("v1", 14), ("v2", 2), ("v3", 1)):
        archive, mark = releases.archives[version], dest.mark()
        code, report, result = load(archive, dest)
        assert code == 0, result.stderr
        assert sorted(statuses(report).values()) == ["copied"] * copied + ["present"] * (
            14 - copied
        )
        assert_all_loaded(releases, dest, version)
        uploads = dest.count("PUT", "/blobs/uploads/", since=mark)
        if version != "v1":  # a delta's load uploads what it carries, once each
            assert uploads == len(blobs(archive) - releases.manifests(releases.sources[version]))


def test_an_image_the_base_holds_under_another_name_is_mounted_and_tagged(
    releases: Releases, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    renamed = NSM + "nginx-mesh-init-fips:2.0.0"
    releases.public.add(renamed, releases.public.artifacts[NSM + "nginx-mesh-init:2.0.0"])
    releases.locks["v4"] = releases.public.write_lock(tmp_path / "v4.lock", [*V1_SOURCES, renamed])
    delta = save(releases, "v4", "renamed.tar", "--since", str(releases.archives["v1"]))
    assert blobs(delta) == set()
    dest = make_registry("basic")
    assert load(releases.archives["v1"], dest)[0] == 0
    mark = dest.mark()
    code, report, result = load(delta, dest)
    assert code == 0, result.stderr
    assert statuses(report)[renamed] == "copied"
    assert tags_at(dest, [renamed]) == {renamed: releases.public.artifacts[renamed].digest}
    assert dest.count("PUT", "/blobs/uploads/", since=mark) == 0
    mounts = dest.count("POST", "/nginx-mesh-init-fips/blobs/uploads/", since=mark)
    assert mounts == 4  # the two base layers, its own layer and its config


def test_a_delta_loads_where_every_mount_opens_an_upload_instead(
    releases: Releases, make_registry: RegistryFactory, proxies: ProxyFactory, tmp_path: Path
) -> None:
    # a registry scoping storage per repository answers a mount with 202 (an upload session):
    # what the delta relies on is then read from where the base put it and uploaded
    renamed = NSM + "nginx-mesh-init-fips:2.0.0"
    releases.public.add(renamed, releases.public.artifacts[NSM + "nginx-mesh-init:2.0.0"])
    sources = [*releases.sources["v2"], renamed]
    releases.locks["v2+renamed"] = releases.public.write_lock(tmp_path / "b.lock", sources)
    b = save(releases, "v2+renamed", "b-renamed.tar", "--since", str(releases.archives["v1"]))
    dest = make_registry("basic")
    proxy = proxies(dest.url)
    refused = proxy.rule("drop-query", "POST", r"\?mount=", times=None)
    through = replace(dest, host=proxy.host, url=proxy.url)
    for archive, copied in ((releases.archives["v1"], 14), (b, 3)):
        mark, mounts = dest.mark(), refused.injected
        code, report, result = load(archive, through)
        assert code == 0, result.stderr
        assert sorted(statuses(report).values()).count("copied") == copied, report
    fips = proxy.seen("POST", r"/nginx-mesh-init-fips/blobs/uploads/\?mount=")
    assert refused.injected > mounts and len(fips) == 4  # two base layers, a layer, a config
    assert dest.count("GET", "/blobs/sha256:", since=mark) == 4  # each read once, and uploaded
    assert dest.count("PUT", "/nginx-mesh-init-fips/blobs/uploads/", since=mark) == 4
    for source in sources:
        assert_loaded(dest, releases.public.artifacts[source], dest_name(source))


def test_delta_without_its_base_loads_nothing(
    releases: Releases, make_registry: RegistryFactory
) -> None:
    dest = make_registry("basic")
    b = releases.archives["v2"]
    code, report, result = load(b, dest)
    assert code == 1 and report == {}
    line = one_error_line(result)
    relied = set(releases.digests(releases.sources["v2"])) - blobs(b)
    assert f"nsm-a.tar ({identity(releases.archives['v1'])})" in line
    assert f"{len(relied)} objects it relies on are missing" in line
    assert not [r for r in dest.requests() if r.method in WRITES]
    assert set(tags_at(dest, releases.sources["v2"]).values()) == {None}
    # with all of the base there but one image, it is refused for that image's own objects
    absent = NSM + "nginx-mesh-metrics:2.0.0"
    others = [s for s in V1_SOURCES if s != absent]
    for source in others:
        push(dest, *dest_name(source).rsplit(":", 1), releases.public.artifacts[source])
    code, _, result = load(b, dest)
    own = set(releases.digests([absent])) - set(releases.digests(others))
    assert code == 1 and f" {len(own)} objects it relies on" in one_error_line(result)
    assert tags_at(dest, [absent]) == {absent: None}


def test_inventory_of_a_loaded_site_gives_the_same_delta(
    releases: Releases, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("basic")
    assert load(releases.archives["v1"], dest)[0] == 0
    have = tmp_path / "have.json"
    result = run_mirror(
        "inventory", "--registry-server", f"{dest.host}/nsm", "--lock", str(releases.locks["v1"]),
        "--registry-username", str(dest.username), "--registry-password-stdin",
        "--output", str(have), input=f"{dest.password}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifests = releases.manifests(V1_SOURCES)
    others = len(releases.digests(V1_SOURCES)) - len(manifests)
    assert result.stdout == (
        f"{have}: 14 of 14 images at {dest.host}/nsm ({len(manifests)} manifests, {others} blobs)\n"
    )
    listed = json.loads(have.read_text())
    held = {d["digest"] for i in listed["images"] for d in (*i["manifests"], *i["blobs"])}
    assert held == set(releases.digests(V1_SOURCES))
    assert not [r for r in dest.requests() if r.method == "GET" and "/blobs/" in r.path]

    delta = save(releases, "v2", "from-have.tar", "--have", str(have))
    assert blobs(delta) == blobs(releases.archives["v2"])
    code, report, result = load(delta, dest)
    assert code == 0, result.stderr
    assert sorted(statuses(report).values()) == ["copied"] * 2 + ["present"] * 12
    assert_all_loaded(releases, dest, "v2")

    both = save(
        releases, "v2", "both.tar", "--since", str(releases.archives["v1"]), "--have", str(have)
    )
    assert blobs(both) == blobs(releases.archives["v2"])
    assert (
        f"nsm-a.tar ({identity(releases.archives['v1'])}) and have.json ("
        in (releases.outputs["both.tar"])
    )


def test_inspect_shows_a_delta(releases: Releases) -> None:
    b = releases.archives["v2"]
    relied = set(releases.digests(releases.sources["v2"])) - blobs(b)
    sizes = releases.digests(releases.sources["v2"])
    text = run_mirror("inspect", "--input", str(b))
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"delta on nsm-a.tar ({identity(releases.archives['v1'])}): carries {len(blobs(b))}" in (
        text.stdout
    )
    assert "missing" not in text.stdout
    metrics = NSM + "nginx-mesh-metrics:2.0.0"
    unchanged = len(releases.digests([metrics]))
    assert (
        f"{metrics} {releases.public.artifacts[metrics].digest} oci image 0 bytes in 0 blobs"
        f" (+{unchanged} in the base)\n" in text.stdout
    )
    document = json.loads(run_mirror("inspect", "--input", str(b), "--output", "json").stdout)
    assert document["complete"] is True
    images = {i["name"]: (i["blobs"], i["in_base"]) for i in document["images"]}
    assert images[metrics] == (0, unchanged)
    assert images[MOVED[NSM + "nginx-mesh-sidecar:2.0.0"]] == (3, 2)  # the base's two layers
    assert document["delta"] == {
        "bases": [{"name": "nsm-a.tar", "identity": identity(releases.archives["v1"])}],
        "carried": {"objects": len(blobs(b)), "size": sum(sizes[d] for d in blobs(b))},
        "relied_on": {"objects": len(relied), "size": sum(sizes[d] for d in relied)},
    }
    full = json.loads(
        run_mirror("inspect", "--input", str(releases.archives["v1"]), "--output", "json").stdout
    )
    assert full["delta"] is None


def test_skopeo_reads_the_full_archive_but_not_a_delta(
    releases: Releases, make_registry: RegistryFactory
) -> None:
    dest = make_registry("basic")
    moved = MOVED[NSM + "nginx-mesh-sidecar:2.0.0"]
    full = f"oci-archive:{releases.archives['v1']}:{NSM}nginx-mesh-sidecar:2.0.0"
    skopeo_copy(full, (dest, "skopeo/sidecar:2.0.0"), preserve_digests=True)
    delta = f"oci-archive:{releases.archives['v2']}:{moved}"
    assert run_skopeo("inspect", "--raw", delta).stdout == releases.public.artifacts[moved].manifest
    # into a repository without the base's layers skopeo fails on the first one it lacks ...
    refused = skopeo_copy(delta, (dest, "skopeo/fresh:2.0.1"), check=False)
    said = refused.stderr.decode()
    base_layer = make_layer("delta-base", 40_000).digest.removeprefix("sha256:")
    assert refused.returncode != 0 and base_layer in said and "no such file" in said, said
    # ... into one that holds them it copies the image, as it skips blobs already there
    skopeo_copy(delta, (dest, "skopeo/sidecar:2.0.1"), preserve_digests=True)
    assert (
        sha256(skopeo_raw(dest, "skopeo/sidecar:2.0.1")) == releases.public.artifacts[moved].digest
    )


def test_a_directory_serves_as_base_and_as_delta(releases: Releases, tmp_path: Path) -> None:
    a, b = tmp_path / "nsm-a", tmp_path / "nsm-b"
    save(releases, "v1", f"{a}/")
    save(releases, "v2", f"{b}/", "--since", str(a))
    stored = {f"sha256:{p.name}" for p in (b / "blobs" / "sha256").iterdir()}
    assert stored == blobs(releases.archives["v2"])
    bases = json.loads(json.loads((b / "index.json").read_text())["annotations"][BASES])
    assert bases == [{"name": "nsm-a", "identity": sha256((a / "index.json").read_bytes())}]
    assert run_mirror("inspect", "--input", str(b)).returncode == 0
    refused = run_mirror("load", "--input", str(b), "--to-docker")
    assert refused.returncode == 2
    assert "nsm-b is a delta on nsm-a (" in one_error_line(refused)


def test_bad_bases_are_one_line_errors(releases: Releases, tmp_path: Path) -> None:
    garbage = tmp_path / "have.json"
    garbage.write_text('{"images": []}')
    for flag, value, expected in (
        ("--since", str(tmp_path / "absent.tar"), "absent.tar: no such file or directory"),
        ("--have", str(garbage), "not a mirror inventory"),
        ("--have", str(tmp_path / "absent.json"), "cannot read"),
        ("--since", str(tmp_path / "x.tar"), "give an earlier archive, not the one being written"),
    ):
        result = run_mirror(
            "save", "--lock", str(releases.locks["v2"]), "--output", str(tmp_path / "x.tar"),
            flag, value,
        )  # fmt: skip
        assert result.returncode == 2 and expected in one_error_line(result), result.stderr
