"""Signatures, attestations, SBOMs and referrers travel with their images (issue 18)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy, ProxyFactory
from tests.imagefactory import (
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    Index,
    make_image,
    make_index,
    push,
    registry_client,
    sha256,
)
from tests.mirrorcli import PublicImages, report_of, run_mirror
from tests.registries import Registry, RegistryFactory
from tests.signing import (
    SIGNATURE_ANNOTATION,
    KeyPair,
    attestation_manifest,
    make_keypair,
    referrer,
    sbom_manifest,
    signature_manifest,
    tag_of,
)
from tests.skopeo import skopeo_raw

LOOKUP = re.compile(
    r"/v2/(?P<repo>.+?)/(?:tags/list|manifests/sha256-[0-9a-f]{64}(?:\.\w+)?|referrers/.+)"
)
BAD = {
    "ghcr.io/acme/other-key:1": "does not verify under any --verify-key",
    "ghcr.io/acme/wrong-digest:1": "a signature names sha256:",
    "ghcr.io/acme/flipped:1": "does not verify under any --verify-key",
    "ghcr.io/acme/unsigned:1": "no signature found",
}


@dataclass
class Signed:
    """The public images, their key, and every attachment pushed (dest name -> tag -> bytes)."""

    public: PublicImages
    key: KeyPair
    good: list[str]
    attached: dict[str, dict[str, Image | Index]] = field(default_factory=dict)
    referrers: dict[str, Image] = field(default_factory=dict)


def _attach(signed: Signed, source: str, tag: str, artifact: Image | Index) -> None:
    host, rest = source.split("/", 1)
    repo = f"{signed.public.prefix}/{host}/{rest.rsplit(':', 1)[0]}"
    push(signed.public.registry, repo, tag, artifact)
    signed.attached.setdefault(dest_repo(source), {})[tag] = artifact


def dest_repo(source: str) -> str:
    return "nsm/" + source.rsplit("/", 1)[-1].split(":")[0]


@pytest.fixture(scope="module")
def signed(anon_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    keys = tmp_path_factory.mktemp("keys")
    key, other = make_keypair(keys), make_keypair(keys, "other")
    public = PublicImages(anon_registry, f"public-{uuid.uuid4().hex[:8]}")
    app = "ghcr.io/acme/app:1.0"
    index = make_index(
        [
            make_image("sig-amd64", [3000]),
            make_image("sig-arm64", [3000], platform=("linux", "arm64")),
        ]
    )
    tools = [f"ghcr.io/acme/tool-{n}:1" for n in range(13)]
    signed = Signed(public, key, [app, *tools])
    public.add(app, index)
    for digest in (index.digest, *(i.digest for i in index.images)):
        _attach(signed, app, tag_of(digest, "sig"), signature_manifest(key, digest))
    _attach(signed, app, tag_of(index.digest, "att"), attestation_manifest(index.digest))
    amd64 = index.images[0]
    _attach(signed, app, tag_of(amd64.digest, "sbom"), sbom_manifest("app amd64"))
    artifact, listing = referrer(index, "app")
    _attach(signed, app, tag_of(index.digest), listing)
    signed.referrers[dest_repo(app)] = artifact
    for number, source in enumerate(tools):
        image = make_image(f"tool-{number}", [500])
        public.add(source, image)
        _attach(signed, source, tag_of(image.digest, "sig"), signature_manifest(key, image.digest))
    for source in BAD:
        image = make_image(source, [500])
        public.add(source, image)
        if "other-key" in source:
            _attach(
                signed, source, tag_of(image.digest, "sig"), signature_manifest(other, image.digest)
            )
        elif "wrong-digest" in source:
            wrong = signature_manifest(key, image.digest, names=index.digest)
            _attach(signed, source, tag_of(image.digest, "sig"), wrong)
        elif "flipped" in source:
            flipped = signature_manifest(key, image.digest, flip=True)
            _attach(signed, source, tag_of(image.digest, "sig"), flipped)
    return signed


def mirror(
    signed: Signed,
    command: str,
    lock: Path,
    dest: Registry,
    *extra: str,
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, object], str]:
    creds: list[str] = []
    stdin = None
    if dest.username:
        creds = ["--registry-username", dest.username, "--registry-password-stdin"]
        stdin = (dest.password or "") + "\n"
    result = run_mirror(
        command, "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        *signed.public.endpoint_args(), *creds, "--output", "json", *extra, input=stdin, env=env,
    )  # fmt: skip
    report = report_of(result) if result.stdout.strip() else {}
    return result.returncode, report, result.stderr


def sync_through(
    signed: Signed, proxy: FaultProxy, source: str, dest: Registry, tmp_path: Path, *extra: str
) -> dict[str, Any]:
    """``mirror sync --output json`` of ``source`` alone into ``dest``, ghcr.io read through
    ``proxy``; the report's entry for the image (the sync must succeed)."""
    lock = signed.public.write_lock(tmp_path / "images.lock", [source])
    result = run_mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm",
        "--endpoint", f"ghcr.io={proxy.url}/{signed.public.prefix}/ghcr.io", "--output", "json",
        *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    image: dict[str, Any] = report_of(result)["images"][0]
    return image


def head(dest: Registry, repo: str, ref: str) -> int:
    with registry_client(dest) as client:
        return client.head(
            f"/v2/{repo}/manifests/{ref}",
            headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"},
        ).status_code


def assert_attachments_equal(signed: Signed, dest: Registry, sources: list[str]) -> None:
    """Every attachment manifest of ``sources`` is at the destination with the same bytes."""
    for source in sources:
        repo = dest_repo(source)
        image = signed.public.artifacts[source]
        assert skopeo_raw(dest, f"{repo}:{source.rsplit(':', 1)[1]}") == image.manifest
        for tag, artifact in signed.attached[repo].items():
            assert skopeo_raw(dest, f"{repo}:{tag}") == artifact.manifest, tag
        if repo in signed.referrers:
            artifact = signed.referrers[repo]
            assert skopeo_raw(dest, f"{repo}@{artifact.digest}") == artifact.manifest


def openssl_verifies(signed: Signed, dest: Registry, source: str, tmp_path: Path) -> None:
    """``openssl dgst -verify`` over the payload and signature as read back from ``dest``."""
    repo, image = dest_repo(source), signed.public.artifacts[source]
    sig = json.loads(skopeo_raw(dest, f"{repo}:{tag_of(image.digest, 'sig')}"))
    layer = sig["layers"][0]
    with registry_client(dest) as client:
        body = client.get(f"/v2/{repo}/blobs/{layer['digest']}")
        body.raise_for_status()
    (tmp_path / "payload").write_bytes(body.content)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]))
    assert json.loads(body.content)["critical"]["image"]["docker-manifest-digest"] == image.digest
    done = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(signed.key.public_pem),
         "-signature", str(tmp_path / "sig.der"), str(tmp_path / "payload")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "Verified OK" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("kind", ["anon", "basic", "token"])
def test_sync_verify_key_copies_signed_images_with_every_attachment_and_refuses_the_rest(
    kind: str, signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry(kind)
    lock = signed.public.write_lock(
        tmp_path / "images.lock", [signed.good[0], signed.good[1], *BAD]
    )
    code, report, stderr = mirror(
        signed, "sync", lock, dest, "--verify-key", str(signed.key.public_pem)
    )
    assert code == 1, stderr
    images = {i["source"]: i for i in report["images"]}  # type: ignore[index]
    for source, reason in BAD.items():
        assert images[source]["status"] == "failed"
        assert reason in images[source]["error"], images[source]["error"]
        assert head(dest, dest_repo(source), "1") == 404
    app, tool = images[signed.good[0]], images[signed.good[1]]
    assert app["status"] == tool["status"] == "copied"
    counts = {k: app[k] for k in ("signatures", "attestations", "sboms", "referrers")}
    assert counts == {"signatures": 3, "attestations": 1, "sboms": 1, "referrers": 1}
    assert tool["signatures"] == 1
    assert_attachments_equal(signed, dest, signed.good[:2])
    openssl_verifies(signed, dest, signed.good[0], tmp_path)


def test_resync_of_14_signed_images_sends_no_get(
    signed: Signed, anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = signed.public.write_lock(tmp_path / "images.lock", signed.good)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    code, report, stderr = mirror(signed, "sync", lock, dest, env=env)
    assert code == 0, stderr
    assert {i["status"] for i in report["images"]} == {"copied"}  # type: ignore[index]
    assert_attachments_equal(signed, dest, signed.good)
    source_mark, dest_mark = anon_registry.mark(), dest.mark()
    code, report, stderr = mirror(signed, "sync", lock, dest, env=env)
    assert code == 0, stderr
    assert {i["status"] for i in report["images"]} == {"present"}  # type: ignore[index]
    assert report["images"][0]["signatures"] == 3  # type: ignore[index]
    prefix = signed.public.prefix
    gets = [r.path for r in anon_registry.requests(source_mark) if r.method == "GET"]
    listings = [p for p in gets if prefix in p and p.endswith("/tags/list")]
    assert len(listings) == 14  # one tags listing per repository, no GET of a manifest or blob
    assert [p for p in gets if prefix in p and p not in listings] == []
    assert dest.count("GET", since=dest_mark) == 0
    assert dest.count("PUT", since=dest_mark) == 0


def test_a_new_signature_of_a_present_image_is_copied_on_resync(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    source = signed.good[5]
    lock = signed.public.write_lock(tmp_path / "images.lock", [source])
    assert mirror(signed, "sync", lock, dest, "--no-attachments")[0] == 0
    tag = tag_of(signed.public.artifacts[source].digest, "sig")
    assert head(dest, dest_repo(source), tag) == 404
    code, report, stderr = mirror(
        signed, "sync", lock, dest, "--verify-key", str(signed.key.public_pem)
    )
    assert code == 0, stderr
    assert report["images"][0]["status"] == "present"  # type: ignore[index]
    assert report["images"][0]["signatures"] == 1  # type: ignore[index]
    assert_attachments_equal(signed, dest, [source])


def test_save_and_load_carry_attachments(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    lock = signed.public.write_lock(tmp_path / "images.lock", signed.good[:2])
    archive = tmp_path / "bundle.tar"
    saved = run_mirror(
        "save", "--lock", str(lock), "--output", str(archive), *signed.public.endpoint_args(),
        "--verify-key", str(signed.key.public_pem),
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    shown = run_mirror("inspect", "--input", str(archive))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    app = signed.public.artifacts[signed.good[0]]
    assert f"{tag_of(app.digest, 'sig')} " in shown.stdout
    assert f"(signatures of {app.digest})" in shown.stdout
    assert f"(referrers of {app.digest})" in shown.stdout
    dest = make_registry("token")
    loaded = run_mirror(
        "load", "--input", str(archive), "--registry-server", f"{dest.host}/nsm",
        "--registry-username", str(dest.username), "--registry-password-stdin",
        "--verify-key", str(signed.key.public_pem), "--output", "json",
        input=f"{dest.password}\n",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    report = report_of(loaded)
    assert [i["status"] for i in report["images"]] == ["copied", "copied"]
    assert report["images"][0]["referrers"] == 1
    assert_attachments_equal(signed, dest, signed.good[:2])
    openssl_verifies(signed, dest, signed.good[1], tmp_path)


def test_a_lock_entry_verify_key_guards_that_image(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    extra = f'verify-key = "{signed.key.public_pem}"'
    lock = signed.public.write_lock(tmp_path / "images.lock", ["ghcr.io/acme/unsigned:1"], extra)
    code, report, stderr = mirror(signed, "sync", lock, dest)
    assert code == 1, stderr
    assert "no signature found" in report["images"][0]["error"]  # type: ignore[index]
    assert head(dest, "nsm/unsigned", "1") == 404


def test_a_file_that_is_no_public_key_is_bad_input(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("anon")
    lock = signed.public.write_lock(tmp_path / "images.lock", signed.good[:1])
    (tmp_path / "key.pem").write_text("not a key\n")
    code, _, stderr = mirror(signed, "sync", lock, dest, "--verify-key", str(tmp_path / "key.pem"))
    assert code == 2
    assert stderr.strip().splitlines() == [
        f"Error: --verify-key {tmp_path / 'key.pem'}: not a PEM public key"
    ]


def test_verify_reports_an_attachment_missing_at_the_destination(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    dest = make_registry("basic")
    lock = signed.public.write_lock(tmp_path / "images.lock", signed.good[:1])
    assert mirror(signed, "sync", lock, dest, "--no-attachments")[0] == 0
    code, report, stderr = mirror(signed, "verify", lock, dest)
    assert code == 1, stderr
    error = report["images"][0]["error"]  # type: ignore[index]
    app = signed.public.artifacts[signed.good[0]]
    assert f"nsm/app:{tag_of(app.digest, 'sig')}" in error
    assert f"nsm/app:{tag_of(app.images[1].digest, 'sig')}" in error  # type: ignore[union-attr]
    assert mirror(signed, "verify", lock, dest, "--no-attachments")[0] == 0
    assert mirror(signed, "sync", lock, dest)[0] == 0
    code, report, stderr = mirror(signed, "verify", lock, dest)
    assert code == 0, stderr


def test_a_signature_stored_as_an_oci_referrer_verifies(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    source = "ghcr.io/acme/referred:1"
    image = make_image(source, [500])
    signed.public.add(source, image)
    artifact, listing = referrer(image, source, signed.key)
    _attach(signed, source, tag_of(image.digest), listing)
    signed.referrers[dest_repo(source)] = artifact
    dest = make_registry("anon")
    lock = signed.public.write_lock(tmp_path / "images.lock", [source])
    code, report, stderr = mirror(
        signed, "sync", lock, dest, "--verify-key", str(signed.key.public_pem)
    )
    assert code == 0, stderr
    assert report["images"][0]["referrers"] == 1  # type: ignore[index]
    assert report["images"][0]["signatures"] == 0  # type: ignore[index]
    assert_attachments_equal(signed, dest, [source])


def test_load_verify_key_refuses_an_unsigned_image_of_the_archive(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    unsigned = "ghcr.io/acme/unsigned:1"
    lock = signed.public.write_lock(tmp_path / "images.lock", [signed.good[2], unsigned])
    layout = tmp_path / "layout"
    saved = run_mirror(
        "save", "--lock", str(lock), "--output", f"{layout}/", *signed.public.endpoint_args()
    )
    assert saved.returncode == 0, saved.stderr
    dest = make_registry("anon")
    loaded = run_mirror(
        "load", "--input", str(layout), "--registry-server", f"{dest.host}/nsm",
        "--verify-key", str(signed.key.public_pem), "--output", "json",
    )  # fmt: skip
    assert loaded.returncode == 1, loaded.stderr
    images = report_of(loaded)["images"]
    assert [i["status"] for i in images] == ["copied", "failed"]
    assert "no signature found" in images[1]["error"]
    assert head(dest, "nsm/unsigned", "1") == 404
    assert_attachments_equal(signed, dest, [signed.good[2]])


def test_referrers_the_api_lists_are_copied_and_listed_under_the_tag_schema(
    signed: Signed,
    anon_registry: Registry,
    proxies: ProxyFactory,
    make_registry: RegistryFactory,
    tmp_path: Path,
) -> None:
    source = "ghcr.io/acme/api-referred:1"
    image = make_image(source, [500])
    signed.public.add(source, image)
    artifact, listing = referrer(image, source, signed.key)
    push(anon_registry, f"{signed.public.prefix}/ghcr.io/acme/api-referred", None, artifact)
    api = proxies(anon_registry.url)  # a source registry that answers the referrers API
    answer = {"status": 200, "headers": {"Content-Type": OCI_INDEX}, "times": None}
    api.rule("replace", "HEAD", f"/referrers/{image.digest}$", **answer)
    api.rule("replace", "GET", f"/referrers/{image.digest}$", body=listing.manifest, **answer)
    dest = make_registry("anon")
    verify = ("--verify-key", str(signed.key.public_pem))
    assert sync_through(signed, api, source, dest, tmp_path, *verify)["referrers"] == 1
    assert skopeo_raw(dest, f"nsm/api-referred@{artifact.digest}") == artifact.manifest
    assert skopeo_raw(dest, f"nsm/api-referred:{tag_of(image.digest)}") == listing.manifest


ARM64 = 'platforms = ["linux/arm64"]'
#: Every way a sync can end for an image: (lock entry extra, a sync before, extra flags, status).
VERIFY_PATHS = {
    "copied": ("tool", "", False, (), "copied"),
    "present": ("tool", "", True, (), "present"),
    "copied, narrowed": ("app", ARM64, False, (), "copied"),
    "present, narrowed": ("app", ARM64, True, (), "present"),
    "copied, its one platform named": ("tool", 'platforms = ["linux/amd64"]', False, (), "copied"),
    "skipped, other platform": ("tool", ARM64, False, (), "skipped"),
    "skipped, dry run": ("app", "", False, ("--dry-run",), "skipped"),
}


@pytest.mark.parametrize("path", VERIFY_PATHS)
def test_verify_key_is_checked_on_every_path_a_sync_can_take(
    path: str, signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    image, extra, synced_before, flags, status = VERIFY_PATHS[path]
    source = signed.good[0] if image == "app" else signed.good[3]
    dest = make_registry("anon")
    lock = signed.public.write_lock(tmp_path / "images.lock", [source], extra)
    if synced_before:
        assert mirror(signed, "sync", lock, dest)[0] == 0
    before = head(dest, dest_repo(source), "1.0" if image == "app" else "1")
    wrong = make_keypair(tmp_path, "wrong").public_pem
    code, report, stderr = mirror(signed, "sync", lock, dest, *flags, "--verify-key", str(wrong))
    assert code == 1, stderr
    (result,) = report["images"]  # type: ignore[index]
    assert result["status"] == "failed", result
    assert "does not verify under any --verify-key" in result["error"]
    assert head(dest, dest_repo(source), "1.0" if image == "app" else "1") == before
    right = signed.key.public_pem
    code, report, stderr = mirror(signed, "sync", lock, dest, *flags, "--verify-key", str(right))
    assert code == 0, stderr
    assert report["images"][0]["status"] == status  # type: ignore[index]


def test_a_narrowed_entry_verifies_against_the_digest_the_registry_holds(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    source = signed.good[0]
    app = signed.public.artifacts[source]
    assert isinstance(app, Index)
    dest = make_registry("basic")
    pinned = f'digest = "{app.digest}"\n{ARM64}'
    lock = signed.public.write_lock(tmp_path / "images.lock", [source], pinned)
    code, report, _ = mirror(signed, "verify", lock, dest)
    assert code == 1
    assert report["images"][0]["error"] == f"{dest.host}/nsm/app:1.0: missing"  # type: ignore[index]
    key = ("--verify-key", str(signed.key.public_pem))
    code, report, stderr = mirror(signed, "sync", lock, dest, *key)
    assert code == 0, stderr
    held = sha256(skopeo_raw(dest, "nsm/app:1.0"))
    assert held != app.digest
    assert report["images"][0]["digest"] == held  # type: ignore[index]
    for subject in (app.digest, app.images[1].digest):  # what was signed: the source's digests
        assert head(dest, "nsm/app", tag_of(subject, "sig")) == 200
    code, report, stderr = mirror(signed, "verify", lock, dest)
    assert code == 0, stderr
    (checked,) = report["images"]  # type: ignore[index]
    assert (checked["digest"], checked["source_digest"]) == (held, app.digest)
    code, report, stderr = mirror(signed, "sync", lock, dest, *key)
    assert code == 0, stderr
    assert report["images"][0]["status"] == "present"  # type: ignore[index]


def test_verify_of_a_narrowed_entry_refuses_an_index_with_other_platforms(
    signed: Signed, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    source = signed.good[0]
    dest = make_registry("anon")
    whole = signed.public.write_lock(tmp_path / "whole.lock", [source])
    assert mirror(signed, "sync", whole, dest, "--no-attachments")[0] == 0
    narrowed = signed.public.write_lock(tmp_path / "images.lock", [source], ARM64)
    code, report, _ = mirror(signed, "verify", narrowed, dest, "--no-attachments")
    assert code == 1
    app = signed.public.artifacts[source]
    assert report["images"][0]["error"] == (  # type: ignore[index]
        f"{dest.host}/nsm/app:1.0: holds {app.digest}, with platform(s) linux/amd64 the lock"
        " does not name"
    )


# --- what looking for attachments costs (issue 24, point 4) -----------------------------------


def two_platform_images(signed: Signed, name: str, count: int) -> list[str]:
    """``count`` unsigned two-platform images, each in a repository of its own."""
    sources = [f"ghcr.io/acme/{name}-{n}:1" for n in range(count)]
    for source in sources:
        platforms = [("linux", "amd64"), ("linux", "arm64")]
        signed.public.add(
            source,
            make_index([make_image(f"{source}-{p[1]}", [300], platform=p) for p in platforms]),
        )
    return sources


def attachment_requests(registry: Registry, since: int, prefix: str) -> dict[str, list[str]]:
    """Per source repository, the requests that looked for attachments: tag listings, attachment
    tags and the referrers API."""
    found: dict[str, list[str]] = {}
    for r in registry.requests(since):
        match = LOOKUP.fullmatch(r.path)
        if match and prefix in r.path:
            found.setdefault(match["repo"], []).append(f"{r.method} {r.path}")
    return found


def looked_up(proxy: FaultProxy, tags: str) -> set[str]:
    """The tags matching ``tags`` that were looked up with a HEAD through ``proxy``."""
    return {s.path.rsplit("/", 1)[1] for s in proxy.seen("HEAD", f"/manifests/{tags}$")}


def test_a_no_op_resync_with_nothing_attached_costs_one_listing_per_repository(
    signed: Signed, anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    sources = two_platform_images(signed, "bare", 2)
    lock = signed.public.write_lock(tmp_path / "images.lock", sources)
    dest = make_registry("anon")
    assert mirror(signed, "sync", lock, dest, env={"XDG_CACHE_HOME": str(tmp_path / "a")})[0] == 0
    mark = anon_registry.mark()
    # an empty cache, as a CronJob's new container has: the indexes are not fetched either
    code, report, stderr = mirror(
        signed, "sync", lock, dest, env={"XDG_CACHE_HOME": str(tmp_path / "b")}
    )
    assert code == 0, stderr
    assert {i["status"] for i in report["images"]} == {"present"}  # type: ignore[index]
    looked = attachment_requests(anon_registry, mark, signed.public.prefix)
    assert len(looked) == 2
    listings = [r for rs in looked.values() for r in rs if "/tags/list" in r]
    referrers = [r for rs in looked.values() for r in rs if "/referrers/" in r]
    assert len(listings) == 2 and len(referrers) == 1, looked  # the API asked once per run
    assert sum(map(len, looked.values())) == len(listings) + len(referrers), looked
    pulls = [
        r for r in anon_registry.requests(mark) if r.method == "GET" and "/tags/list" not in r.path
    ]
    assert pulls == []


def test_a_registry_without_the_referrers_api_is_asked_once_per_run(
    signed: Signed, anon_registry: Registry, make_registry: RegistryFactory, tmp_path: Path
) -> None:
    sources = two_platform_images(signed, "asked", 4)
    lock = signed.public.write_lock(tmp_path / "images.lock", sources)
    mark = anon_registry.mark()
    code, report, stderr = mirror(signed, "sync", lock, make_registry("anon"), "--jobs", "4")
    assert code == 0, stderr
    assert {i["status"] for i in report["images"]} == {"copied"}  # type: ignore[index]
    asked = [r for r in anon_registry.requests(mark) if "/referrers/" in r.path]
    assert [(r.method, r.status) for r in asked] == [("HEAD", 404)]


def test_a_registry_refusing_tag_listings_is_probed_and_every_attachment_still_copied(
    signed: Signed, anon_registry: Registry, proxies: ProxyFactory, make_registry: RegistryFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    source = signed.good[0]
    refusing = proxies(anon_registry.url)
    refusing.rule("status", "GET", "/tags/list", times=None, status=403)
    dest = make_registry("anon")
    verify = ("--verify-key", str(signed.key.public_pem))
    image = sync_through(signed, refusing, source, dest, tmp_path, *verify)
    counts = {k: image[k] for k in ("signatures", "attestations", "sboms", "referrers")}
    assert counts == {"signatures": 3, "attestations": 1, "sboms": 1, "referrers": 1}
    assert_attachments_equal(signed, dest, [source])
    assert len(refusing.seen("GET", "/tags/list")) == 1
    assert len(looked_up(refusing, r"sha256-[0-9a-f]{64}\.(sig|att|sbom)")) == 9  # 3 digests


def test_a_listing_in_pages_is_followed_by_its_link_header(
    signed: Signed, anon_registry: Registry, proxies: ProxyFactory, make_registry: RegistryFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    source = signed.good[3]
    listing = f"/v2/{signed.public.prefix}/ghcr.io/acme/tool-2/tags/list"
    paged = proxies(anon_registry.url)
    first = json.dumps({"name": "tool-2", "tags": ["0.9", "1"]}).encode()
    link = {"Link": f'<{listing}?last=1&n=1000>; rel="next"', "Content-Type": "application/json"}
    paged.rule("replace", "GET", r"/tags/list\?n=1000$", status=200, headers=link, body=first)
    dest = make_registry("anon")
    assert sync_through(signed, paged, source, dest, tmp_path)["signatures"] == 1
    assert_attachments_equal(signed, dest, [source])
    assert [s.path for s in paged.seen("GET", "/tags/list")] == [
        f"{listing}?n=1000",
        f"{listing}?last=1&n=1000",
    ]
    assert looked_up(paged, "sha256-.*") == {tag_of(signed.public.artifacts[source].digest, "sig")}


def test_a_listing_longer_than_the_lookups_it_replaces_gives_way_to_them(
    signed: Signed, anon_registry: Registry, proxies: ProxyFactory, make_registry: RegistryFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    source = signed.good[4]
    listing = f"/v2/{signed.public.prefix}/ghcr.io/acme/tool-3/tags/list"
    endless = proxies(anon_registry.url)
    page = json.dumps({"name": "tool-3", "tags": ["1"]}).encode()
    link = {"Link": f'<{listing}?last=1&n=1000>; rel="next"', "Content-Type": "application/json"}
    endless.rule("replace", "GET", "/tags/list", times=None, status=200, headers=link, body=page)
    dest = make_registry("anon")
    assert sync_through(signed, endless, source, dest, tmp_path)["signatures"] == 1
    assert_attachments_equal(signed, dest, [source])
    # 3 pages at most, fewer than the 4 lookups (.sig, .att, .sbom, referrers tag) they replace
    assert len(endless.seen("GET", "/tags/list")) == 3
    assert len(looked_up(endless, r"sha256-[0-9a-f]{64}(\.(sig|att|sbom))?")) == 4
