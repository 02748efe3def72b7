"""How production registries answer, beyond a plain docker-registry (issue 14): redirects to
object storage, upload URLs on other hosts, refused mounts, size limits, compressing proxies,
several challenges in one header and a destination that stores something else.

Every test runs ``mirror sync`` as a user would, through :class:`tests.faultproxy.FaultProxy`.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.faultproxy import ProxyFactory
from tests.imagefactory import (
    basic_header,
    make_image,
    make_index,
    make_layer,
    push,
    registry_client,
)
from tests.mirrorcli import PublicImages, report_of, run_mirror
from tests.registries import Registry, RegistryFactory
from tests.test_faults import ALPHA, BETA, FAST, GAMMA, Setup, assert_mirrored, own_layer


@pytest.fixture(scope="module")
def public(anon_registry: Registry) -> PublicImages:
    """Three images sharing a base layer, as in tests/test_faults.py."""
    images = PublicImages(anon_registry, f"protocol-{uuid.uuid4().hex[:8]}")
    base = [make_layer("protocol-base", 40_000)]
    images.add(ALPHA, make_image("protocol-alpha", [60_000, 30_000, 20_000], base=base))
    beta = [
        make_image("protocol-beta-amd64", [50_000], base=base),
        make_image("protocol-beta-arm64", [45_000], base=base, platform=("linux", "arm64")),
    ]
    images.add(BETA, make_index(beta))
    images.add(GAMMA, make_image("protocol-gamma", [10_000], base=base, fmt="docker"))
    return images


@pytest.fixture
def setup(
    public: PublicImages, anon_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> Setup:
    lock = public.write_lock(tmp_path / "images.lock")
    source, dest = proxies(anon_registry.url), proxies(anon_registry.url)
    return Setup(public, source, dest, anon_registry, f"dest-{uuid.uuid4().hex[:8]}", lock)


def statuses(report: dict[str, object]) -> dict[str, str]:
    """Status per source image of a report."""
    return {i["source"]: i["status"] for i in report["images"]}  # type: ignore[attr-defined]


def test_blob_reads_redirected_to_storage_mean_present_on_resync_and_dry_run(
    setup: Setup,
) -> None:
    for method in ("HEAD", "GET"):
        setup.dest.rule("redirect", method, "/blobs/sha256:", times=None)
    missing = own_layer(setup.public, ALPHA)
    setup.source.rule("corrupt", "GET", f"/blobs/{missing}", times=None)
    code, report, stderr = setup.sync()
    assert code == 1, stderr
    assert statuses(report) == {ALPHA: "failed", BETA: "copied", GAMMA: "copied"}

    setup.source.clear()
    code, report, stderr = setup.sync("--dry-run")
    assert code == 0, stderr
    alpha = next(i for i in report["images"] if i["source"] == ALPHA)
    size = next(b.size for b in setup.public.artifacts[ALPHA].blobs if b.digest == missing)
    assert f"would upload {size} bytes" in alpha["notes"]

    code, report, stderr = setup.sync()
    assert code == 0, stderr
    assert statuses(report)[ALPHA] == "copied"
    assert report["summary"]["blobs_uploaded"] == 1
    setup.assert_mirrored()
    assert setup.dest.seen("HEAD", "/blobs/sha256:")
    assert all(r.fault == "redirect" for r in setup.dest.seen("HEAD", "/blobs/sha256:"))


def test_an_upload_url_on_another_host_gets_no_credentials(
    public: PublicImages, basic_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> None:
    storage = proxies(basic_registry.url)  # a pre-signed upload URL: it authenticates itself
    assert basic_registry.username and basic_registry.password
    signature = {"Authorization": basic_header(basic_registry.username, basic_registry.password)}
    storage.rule("sign", times=None, headers=signature, status=400)
    dest = proxies(basic_registry.url)
    dest.rule("relocate", "POST", "/blobs/uploads/", times=None, target=storage.url)
    prefix = f"dest-{uuid.uuid4().hex[:8]}"
    result = sync_to(public, basic_registry, f"{dest.host}/{prefix}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(statuses(report_of(result)).values()) == {"copied"}
    with registry_client(basic_registry) as client:
        for source, artifact in public.artifacts.items():
            assert_mirrored(client, prefix, source, artifact)
    assert storage.seen("PUT", "/blobs/uploads/")
    assert not [r for r in storage.requests if "authorization" in r.headers]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
def test_a_refused_mount_falls_back_to_an_upload(status: int, setup: Setup) -> None:
    refused = setup.dest.rule("status", "POST", r"\?mount=", times=None, status=status)
    code, report, stderr = setup.sync(debug=True)
    assert code == 0, stderr
    assert set(statuses(report).values()) == {"copied"}
    setup.assert_mirrored()
    assert refused.injected >= 1
    assert report["summary"]["blobs_mounted"] == 0
    refusals = [line for line in stderr.splitlines() if "mount" in line and "refused" in line]
    assert len(refusals) == refused.injected, stderr
    assert all(line.startswith("DEBUG ") and f"HTTP {status}" in line for line in refusals)


def test_an_upload_a_mount_opened_instead_is_the_one_used(setup: Setup) -> None:
    # gamma's blobs are already in its repository (under another tag), so the upload its
    # base layer's mount opens is not needed: that one is deleted, the others are filled
    push(setup.registry, f"{setup.prefix}/gamma", "other", setup.public.artifacts[GAMMA])
    ignored = setup.dest.rule("drop-query", "POST", r"\?mount=", times=None)
    mark = setup.registry.mark()
    code, report, stderr = setup.sync("--jobs", "1")
    assert code == 0, stderr
    assert set(statuses(report).values()) == {"copied"}
    setup.assert_mirrored()
    assert ignored.injected == 2  # beta's base layer, then gamma's
    requests = setup.registry.requests(mark)
    uploads = [r for r in requests if r.method == "POST" and "/blobs/uploads/" in r.path]
    puts = [r for r in requests if r.method == "PUT" and "/blobs/uploads/" in r.path]
    deletes = [r for r in requests if r.method == "DELETE"]
    assert len(puts) == report["summary"]["blobs_uploaded"]
    assert [(r.status, "/gamma/blobs/uploads/" in r.path) for r in deletes] == [(204, True)]
    assert len(uploads) == len(puts) + len(deletes)


@pytest.mark.parametrize("kind", ["gzip", "redirect"])
def test_blobs_are_asked_for_as_stored_not_compressed(kind: str, setup: Setup) -> None:
    setup.source.rule(kind, "GET", "/blobs/sha256:", times=None)
    code, report, stderr = setup.sync()
    assert code == 0, stderr
    assert set(statuses(report).values()) == {"copied"}
    setup.assert_mirrored()
    asked = [r.headers for r in setup.source.seen("GET", "/blobs/sha256:")]
    asked += setup.source.blobs.requests
    assert asked and all(h.get("accept-encoding") == "identity" for h in asked)


def sync_to(
    public: PublicImages, dest: Registry, server: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``mirror sync`` of every public image to ``server``, with ``dest``'s credentials."""
    assert dest.username and dest.password
    return run_mirror(
        "sync", "--lock", str(public.write_lock(tmp_path / "images.lock")),
        "--registry-server", server, *public.endpoint_args(),
        "--registry-username", dest.username, "--registry-password-stdin",
        "--output", "json", input=dest.password + "\n", env=FAST,
    )  # fmt: skip


def test_an_upload_url_on_another_host_asking_for_credentials_says_why_it_got_none(
    public: PublicImages, basic_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> None:
    elsewhere = proxies(basic_registry.url)
    dest = proxies(basic_registry.url)
    dest.rule("relocate", "POST", "/blobs/uploads/", times=None, target=elsewhere.url)
    result = sync_to(public, basic_registry, f"{dest.host}/{uuid.uuid4().hex[:8]}", tmp_path)
    assert result.returncode == 1
    errors = [i["error"] for i in report_of(result)["images"]]
    hint = f"HTTP 401: UNAUTHORIZED: authentication required ({elsewhere.host} is not the registry"
    assert errors and all(hint in e for e in errors), errors
    assert not [r for r in elsewhere.requests if "authorization" in r.headers]


def test_a_bearer_challenge_is_answered_when_basic_is_offered_too(
    public: PublicImages, make_registry: RegistryFactory, proxies: ProxyFactory, tmp_path: Path
) -> None:
    dest = make_registry("token")
    proxy = proxies(dest.url)
    decoy = {"WWW-Authenticate": 'Basic realm="decoy"'}
    offered = proxy.rule("append-header", times=None, headers=decoy)
    result = sync_to(public, dest, f"{proxy.host}/mirrored", tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(statuses(report_of(result)).values()) == {"copied"}
    assert offered.injected and dest.issuer and dest.issuer.requests
    with registry_client(dest) as client:
        for source, artifact in public.artifacts.items():
            assert_mirrored(client, "mirrored", source, artifact)


def test_a_destination_storing_another_manifest_fails_that_image_untagged(setup: Setup) -> None:
    lie = setup.dest.rule("wrong-digest", "PUT", "/alpha/manifests/", times=None)
    code, report, stderr = setup.sync()
    assert code == 1, stderr
    assert lie.injected
    assert statuses(report) == {ALPHA: "failed", BETA: "copied", GAMMA: "copied"}
    alpha = next(i for i in report["images"] if i["source"] == ALPHA)
    assert "manifest digest mismatch" in alpha["error"]
    assert setup.digest(ALPHA) is None
    setup.assert_mirrored(BETA, GAMMA)


#: A fault on the first PATCH: (rule kind, the upload status GET's answer, upload POSTs for
#: config and layer, retries).
PATCH_FAULTS = {
    # answered before the registry saw it: the upload resumes where its Range says (0-0)
    "503 on a PATCH": ("status", 204, 3, 2),
    # the registry took the piece but the answer was lost: distribution then drops the
    # upload (its stale URL no longer matches), so the blob starts again
    "reset after a PATCH": ("reset", 404, 4, 3),
}


@pytest.mark.parametrize("case", PATCH_FAULTS)
def test_a_blob_refused_in_one_put_goes_up_in_chunks_resumed_after_a_fault(
    case: str, anon_registry: Registry, proxies: ProxyFactory, tmp_path: Path
) -> None:
    kind, answer, posts, retries = PATCH_FAULTS[case]
    big = PublicImages(anon_registry, f"protocol-{uuid.uuid4().hex[:8]}")
    big.add(ALPHA, make_image("protocol-big", [2_500_000]))
    limit = 1024 * 1024  # nginx's default client_max_body_size
    lock = big.write_lock(tmp_path / "images.lock")
    setup = Setup(big, proxies(anon_registry.url), proxies(anon_registry.url), anon_registry,
                  f"dest-{uuid.uuid4().hex[:8]}", lock)  # fmt: skip
    too_large = setup.dest.rule("status", times=None, status=413, larger_than=limit)
    fault = setup.dest.rule(kind, "PATCH", "/blobs/uploads/")
    mark = anon_registry.mark()
    code, report, stderr = setup.sync()
    assert code == 0, stderr
    assert statuses(report) == {ALPHA: "copied"}
    setup.assert_mirrored()
    assert too_large.injected == 1 and fault.injected == 1
    ranges = [r.headers["content-range"] for r in setup.dest.seen("PATCH", "/blobs/uploads/")]
    assert ranges == [f"0-{limit - 1}", f"0-{limit - 1}", f"{limit}-{2 * limit - 1}"]
    assert len(setup.dest.seen("POST", "/blobs/uploads/")) == posts
    assert report["summary"]["retries"] == retries
    logged = anon_registry.requests(mark)
    status_reads = [r for r in logged if r.method == "GET" and "/blobs/uploads/" in r.path]
    assert [r.status for r in status_reads] == [answer]
    assert [r for r in logged if r.status == 416] == []
