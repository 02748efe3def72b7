"""The benchmark workloads of issues 16 and 24: meshlift against skopeo run as its users would,
and against itself looking up attachment tags one by one.

Both tools give the same guarantees (every platform, digests preserved), each measurement gets a
fresh destination registry, the tools alternate their order every round, and every timed copy is
followed (untimed) by a check of every destination digest against the source. skopeo runs with
an isolated blob-info cache per run (tests/skopeo.py).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.measure import (
    ROOT,
    Run,
    Workload,
    alternate,
    counted,
    gets,
    in_parallel,
    peak_rss,
    ratio_to,
    report,
    requests,
    seconds,
    timed,
    verify,
)
from benchmarks.shaper import Shaper
from tests.faultproxy import FaultProxy
from tests.imagefactory import Blob, make_image, make_index, push, registry_client, sha256
from tests.registries import Registry, start_registry
from tests.skopeo import isolated_skopeo_command, registry_flags

MiB = 1024 * 1024
TAG = "1.0"
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10")
MANY_TAGS = 3000
# skopeo copies no cosign signatures, attestations, SBOMs or referrers of an image; meshlift is
# timed as users run it (looking for them: a tags listing per repository) and, on the sync
# workloads, also without them (the work skopeo does).
SAME_WORK_AS_SKOPEO = ("--no-attachments",)
BARE = "meshlift --no-attachments"
Images = Mapping[str, str]  # source repository -> digest of its TAG
Copier = Callable[[str, Registry], Run]  # (source host, destination) -> timed copy of a set


def dest_repo(repo: str) -> str:
    """Where every tool puts a source repository: ``nsm/<last path component>``."""
    return f"nsm/{repo.rsplit('/', 1)[-1]}"


class Bench:
    """The seeded source registry, fresh destinations, and the commands of both tools."""

    def __init__(self, workdir: Path, registries: Path) -> None:
        self.workdir = workdir
        self.registries = registries
        self.source = start_registry("anon", registries / "source")
        self._n = 0

    def path(self, name: str) -> Path:
        """A new path in the work directory."""
        self._n += 1
        return self.workdir / f"{name}-{self._n}"

    def destination(self, kind: str = "basic", tls: bool = False) -> Registry:
        self._n += 1
        return start_registry(kind, self.registries / f"dest-{self._n}", tls=tls)

    def drop(self, registry: Registry) -> None:
        registry.stop()
        shutil.rmtree(registry.workdir, ignore_errors=True)

    def checked(
        self,
        tool: str,
        run: Callable[[], Run],
        dest: Registry,
        images: Images,
        shaper: Shaper | None,
    ) -> Run:
        """``run()`` with its requests counted, then every destination digest verified."""
        result = counted(run, {"source": self.source, "dest": dest}, shaper)
        verify(tool, dest, {f"{dest_repo(r)}:{TAG}": d for r, d in images.items()})
        return result

    def mirror(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mirror", *args]

    def skopeo(self, *args: str) -> list[str]:
        return isolated_skopeo_command(self.path("skopeo"), *args)

    def lock(self, images: Images) -> Path:
        lock = self.path("images.lock")
        entries = "".join(f'\n[[images]]\nsource = "bench.example/{r}:{TAG}"\n' for r in images)
        lock.write_text("version = 1\n" + entries)
        return lock

    def mirror_into(self, dest: Registry, *args: str) -> Run:
        """``mirror ARGS`` with ``dest`` as --registry-server (password on stdin)."""
        ca = ["--ca-file", str(dest.ca_file)] if dest.ca_file else []
        return timed(
            [self.mirror(*args, "--registry-server", f"{dest.host}/nsm", *ca, "--quiet",
                         "--registry-username", "user", "--registry-password-stdin")],
            stdin="password\n",
        )  # fmt: skip

    def mirror_sync(self, images: Images, source_host: str, dest: Registry, *extra: str) -> Run:
        return self.mirror_into(
            dest, "sync", "--lock", str(self.lock(images)), "--state-dir", str(self.path("state")),
            "--endpoint", f"bench.example=http://{source_host}", "--jobs", "4", *extra,
        )  # fmt: skip

    def mirror_sync_bare(self, images: Images, source_host: str, dest: Registry) -> Run:
        """``mirror sync --no-attachments``: the work skopeo does."""
        return self.mirror_sync(images, source_host, dest, *SAME_WORK_AS_SKOPEO)

    def skopeo_sync(self, images: Images, source_host: str, dest: Registry) -> Run:
        listing = self.path("skopeo-sync.yaml")
        lines = [f"{source_host}:", "  tls-verify: false", "  images:"]
        listing.write_text("\n".join([*lines, *(f'    {r}: ["{TAG}"]' for r in images)]) + "\n")
        return timed(
            [self.skopeo("sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
                         *registry_flags(dest, "dest-"), str(listing), f"{dest.host}/nsm")]
        )  # fmt: skip

    def skopeo_copy(self, src: str, dst: str, dest: Registry | None = None) -> list[str]:
        flags = registry_flags(dest, "dest-") if dest else []
        return self.skopeo(
            "copy", "--all", "--preserve-digests", "--src-tls-verify=false", *flags, src, dst
        )

    def skopeo_copies(self, images: Images, source_host: str, dest: Registry) -> Run:
        """One ``skopeo copy`` per image, four at a time."""
        return in_parallel(
            [
                self.skopeo_copy(
                    f"docker://{source_host}/{r}:{TAG}",
                    f"docker://{dest.host}/{dest_repo(r)}:{TAG}",
                    dest,
                )
                for r in images
            ]
        )


def random_blob(seed: str, size: int) -> Blob:
    """``size`` incompressible bytes (not gzip: registries do not look inside layers)."""
    data = hashlib.shake_256(seed.encode()).digest(size) if size <= 64 * MiB else os.urandom(size)
    return Blob(data, sha256(data), "application/vnd.oci.image.layer.v1.tar+gzip", sha256(data))


def seed_w1(bench: Bench, count: int) -> Images:
    """``count`` indexes of two platforms: a shared 2 MiB base and a unique 2.5 MiB layer each."""
    bases = {arch: random_blob(f"base-{arch}", 2 * MiB) for arch in ("amd64", "arm64")}

    def one(i: int) -> tuple[str, str]:
        images = [
            make_image(
                f"w1-{i}-{arch}",
                [random_blob(f"w1-{i}-{arch}", 5 * MiB // 2)],
                base=[bases[arch]],
                platform=("linux", arch),
            )
            for arch in bases
        ]
        repo = f"bench/w1/img-{i:02d}"
        return repo, push(bench.source, repo, TAG, make_index(images))

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, range(count)))


def compare(
    bench: Bench,
    rounds: int,
    images: Images,
    tools: Mapping[str, Copier],
    work: Workload,
    again: Workload | None = None,
    shaper: Shaper | None = None,
    dest: Callable[[], Registry] | None = None,
) -> None:
    """Each tool copies ``images`` into a fresh ``dest()`` (then once more, for ``again``),
    reading the source through ``shaper`` if given."""
    host = shaper.host if shaper else bench.source.host

    def trial(tool: str, copy: Copier) -> None:
        registry = (dest or bench.destination)()
        try:
            run = functools.partial(copy, host, registry)
            work.add(tool, bench.checked(tool, run, registry, images, shaper))
            if again:
                again.add(tool, bench.checked(tool, run, registry, images, shaper))
        finally:
            bench.drop(registry)

    alternate(rounds, [functools.partial(trial, t, c) for t, c in tools.items()])


def syncs(bench: Bench, images: Images) -> dict[str, Copier]:
    """meshlift's sync commands (with attachments, the default, and without) and skopeo's."""
    return {
        "meshlift": functools.partial(bench.mirror_sync, images),
        BARE: functools.partial(bench.mirror_sync_bare, images),
        "skopeo sync": functools.partial(bench.skopeo_sync, images),
    }


def w1_w2(bench: Bench, rounds: int, images: Images) -> list[Workload]:
    w1 = Workload(
        "W1 cold sync",
        [
            ratio_to("skopeo sync", 0.5),
            ratio_to("skopeo sync", 0.45, BARE),
            ratio_to("skopeo copy x4", 0.7, BARE),
        ],
    )
    w2 = Workload(
        "W2 no-op re-sync",
        [ratio_to("skopeo sync", 0.45), ratio_to("skopeo sync", 0.3, BARE), gets("meshlift")],
    )
    tools: dict[str, Copier] = {
        **syncs(bench, images),
        "skopeo copy x4": functools.partial(bench.skopeo_copies, images),
    }
    compare(bench, rounds, images, tools, w1, again=w2)
    w1.notes.append("skopeo copy x4: one skopeo copy per image, four at a time")
    return [w1, w2]


def w3(bench: Bench, rounds: int, size: int) -> Workload:
    image = make_image("w3", [random_blob("w3", size)])
    images = {"bench/w3/big": push(bench.source, "bench/w3/big", TAG, image)}
    del image
    work = Workload(
        f"W3 one {size // MiB} MiB layer",
        [ratio_to("skopeo copy", 1.0), peak_rss("meshlift", 64)],
    )
    tools = {
        "meshlift": functools.partial(bench.mirror_sync, images),
        "skopeo copy": functools.partial(bench.skopeo_copies, images),
    }
    compare(bench, rounds, images, tools, work)
    return work


def w4(bench: Bench, rounds: int, images: Images) -> Workload:
    work = Workload("W4 air gap (save + load)", [ratio_to("skopeo via oci:DIR", 0.8)])
    tools = {
        "meshlift": functools.partial(mirror_air_gap, bench, images),
        "skopeo via oci:DIR": functools.partial(skopeo_air_gap, bench, images),
    }
    compare(bench, rounds, images, tools, work)
    work.notes.append(
        "meshlift: save to one tar, load from it; skopeo: copy each image into one OCI layout "
        "(one ref name each; one at a time, as its index.json takes no concurrent writers), "
        "then out of it four at a time"
    )
    return work


def mirror_air_gap(bench: Bench, images: Images, source_host: str, dest: Registry) -> Run:
    """``mirror save`` into a tar, then ``mirror load`` from it."""
    archive = bench.path("air-gap.tar")
    save = timed(
        [bench.mirror("save", "--lock", str(bench.lock(images)), "--output", str(archive),
                      "--endpoint", f"bench.example=http://{source_host}", "--quiet")]
    )  # fmt: skip
    load = bench.mirror_into(dest, "load", "--input", str(archive))
    archive.unlink()
    return Run(save.seconds + load.seconds, max(save.peak_rss_mib, load.peak_rss_mib))


def skopeo_air_gap(bench: Bench, images: Images, source_host: str, dest: Registry) -> Run:
    """``skopeo copy`` of every image into one ``oci:DIR`` layout, then out of it."""
    layout = bench.path("air-gap-layout")
    names = {r: r.rsplit("/", 1)[-1] for r in images}
    into = in_parallel(
        [bench.skopeo_copy(f"docker://{source_host}/{r}:{TAG}", f"oci:{layout}:{n}")
         for r, n in names.items()],
        workers=1,
    )  # fmt: skip
    out = in_parallel(
        [bench.skopeo_copy(f"oci:{layout}:{n}", f"docker://{dest.host}/{dest_repo(r)}:{TAG}", dest)
         for r, n in names.items()]
    )  # fmt: skip
    shutil.rmtree(layout)
    return Run(into.seconds + out.seconds, max(into.peak_rss_mib, out.peak_rss_mib))


def w5(bench: Bench, rounds: int) -> Workload:
    work = Workload("W5 start-up", [seconds("mirror --help", 0.25), seconds("mirror list", 0.25)])
    for _ in range(max(rounds, 5)):
        work.add("mirror --help", timed([bench.mirror("--help")]))
        work.add("mirror list", timed([bench.mirror("list")]))
    return work


def w6(bench: Bench, rounds: int) -> Workload:
    """``mirror inspect`` of a 1 GiB archive (its layer a hole: only a reader of blob contents
    would spend time on it)."""
    from tests.test_airgap import sparse_archive

    archive = bench.path("sparse-1gib.tar")
    sparse_archive(archive, 1 << 30)
    work = Workload("W6 inspect a 1 GiB archive", [seconds("mirror inspect", 1.0)])
    for _ in range(max(rounds, 3)):
        work.add("mirror inspect", timed([bench.mirror("inspect", "--input", str(archive))]))
    archive.unlink()
    return work


def w7(bench: Bench, rounds: int, images: Images) -> Workload:
    work = Workload(
        "W7 WAN (40 ms, 200 Mbit/s)",
        [
            ratio_to("skopeo sync", 0.2),
            requests("meshlift", "source", 170),
            ratio_to("skopeo sync", 0.15, BARE),
        ],
    )
    with Shaper(bench.source.host, rtt=0.040, mbit=200) as shaper:
        compare(bench, rounds, images, syncs(bench, images), work, shaper=shaper)
    work.notes.append(
        "source behind benchmarks/shaper.py: +40 ms per round trip (and per new connection), "
        "200 Mbit/s per connection"
    )
    return work


def w8(bench: Bench, rounds: int, images: Images) -> Workload:
    work = Workload(
        "W8 TLS + token destination",
        [ratio_to("skopeo sync", 0.45), ratio_to("skopeo sync", 0.45, BARE)],
    )
    tls_token = functools.partial(bench.destination, "token", tls=True)
    compare(bench, rounds, images, syncs(bench, images), work, dest=tls_token)
    work.notes.append("skopeo: --dest-cert-dir with the CA, --dest-creds for the token service")
    return work


def w9(bench: Bench, rounds: int, size: int) -> Workload:
    """``mirror load`` of one large image from 100 MB parts against the same unsplit tar."""
    image = make_image("w9", [random_blob("w9", size)])
    images = {"bench/w9/big": push(bench.source, "bench/w9/big", TAG, image)}
    del image
    archive = bench.path("w9") / "big.tar"
    archive.parent.mkdir()
    timed(
        [bench.mirror("save", "--lock", str(bench.lock(images)), "--output", str(archive),
                      "--endpoint", f"bench.example=http://{bench.source.host}", "--quiet",
                      *SAME_WORK_AS_SKOPEO)]
    )  # fmt: skip
    parts = bench.path("w9-parts")
    parts.mkdir()
    shutil.copyfile(archive, parts / archive.name)
    timed([bench.mirror("split", "--input", str(parts / archive.name), "--split-size", "100M")])
    (parts / archive.name).unlink()
    count = len(list(parts.glob("big.tar.[0-9]*")))
    work = Workload(
        f"W9 load {size // MiB} MiB from {count} parts",
        [ratio_to("unsplit tar", 1.1), peak_rss("meshlift", 64)],
    )
    tools: dict[str, Copier] = {
        "meshlift": lambda _, dest: bench.mirror_into(dest, "load", "--input", str(parts)),
        "unsplit tar": lambda _, dest: bench.mirror_into(dest, "load", "--input", str(archive)),
    }
    compare(bench, rounds, images, tools, work)
    work.notes.append(
        "meshlift: mirror load of the parts (every part's sha256 checked first); unsplit tar:"
        " mirror load of the tar they were split from"
    )
    shutil.rmtree(parts)
    shutil.rmtree(archive.parent)
    return work


def seed_many_tags(bench: Bench) -> Images:
    """One two-platform index in a repository that also holds MANY_TAGS other tags of it."""
    repo = "bench/w10/many-tags"
    platforms = [("linux", "amd64"), ("linux", "arm64")]
    index = make_index([make_image(f"w10-{p[1]}", [1000], platform=p) for p in platforms])
    digest = push(bench.source, repo, TAG, index)
    with registry_client(bench.source) as client:
        for n in range(MANY_TAGS):
            client.put(
                f"/v2/{repo}/manifests/v{n:04d}",
                content=index.manifest,
                headers={"Content-Type": index.media_type},
            ).raise_for_status()
    return {repo: digest}


def w10(bench: Bench, rounds: int) -> list[Workload]:
    """Attachments looked for in a repository of MANY_TAGS tags over the WAN: one tags listing
    (the default) against a HEAD per attachment tag (the listing refused by a fault proxy)."""
    with progress(f"seeding W10's {MANY_TAGS} tags"):
        images = seed_many_tags(bench)
    refused = "meshlift, probing tags"
    cold = Workload(f"W10 {MANY_TAGS} tags, cold", [ratio_to(refused, 1.0)])
    noop = Workload(f"W10 {MANY_TAGS} tags, no-op", [ratio_to(refused, 1.0)])
    listing, refusing = FaultProxy(bench.source.url), FaultProxy(bench.source.url)
    refusing.rule("status", "GET", "/tags/list", times=None, status=405)
    try:
        with Shaper(listing.host) as listed, Shaper(refusing.host) as probed:
            tools: dict[str, Copier] = {
                "meshlift": lambda _, dest: bench.mirror_sync(images, listed.host, dest),
                refused: lambda _, dest: bench.mirror_sync(images, probed.host, dest),
            }
            compare(bench, rounds, images, tools, cold, again=noop)
    finally:
        listing.stop()
        refusing.stop()
    noop.notes.append(
        "source behind a fault proxy and benchmarks/shaper.py (+40 ms per round trip); the "
        "refused listing is answered by the proxy, so the source's count leaves it out"
    )
    return [cold, noop]


def machine(load_before: float, took: float) -> str:
    """Cores, CPU model, 1-minute load average before and after, and the run's duration."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                  if ln.startswith("model name")), "unknown CPU")  # fmt: skip
    return (
        f"{os.cpu_count()} cores, {model}; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; the run took {took:.0f} s"
    )


@contextlib.contextmanager
def progress(what: str) -> Iterator[None]:
    """Say on stderr how long ``what`` took."""
    started = time.monotonic()
    yield
    print(f"{what}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--only", nargs="*", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument(
        "--registry-storage",
        choices=("tmpfs", "disk"),
        default="tmpfs" if os.access("/dev/shm", os.W_OK) else "disk",
        help="where the loopback registries store blobs (tmpfs: /dev/shm)",
    )
    args = parser.parse_args()
    only = set(args.only)
    # As installed by pip, meshlift runs from bytecode; compile it even where the environment
    # sets PYTHONDONTWRITEBYTECODE, so no timed run pays for compiling the sources.
    for package in ("mirror", "deploy"):
        compileall.compile_dir(ROOT / package, quiet=1)
    started, load = time.monotonic(), os.getloadavg()[0]
    # On disk, a registry's CPU per request grew 50% within one run (ext4 allocating inodes on
    # a file system full of freed ones), and the ratios with it; tmpfs keeps rounds comparable.
    shm = "/dev/shm" if args.registry_storage == "tmpfs" else None
    with (
        tempfile.TemporaryDirectory(prefix="meshlift-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="meshlift-bench-registries-", dir=shm) as regs,
    ):
        bench = Bench(Path(tmp), Path(regs))
        try:
            images: Images = {}
            if only - {"W3", "W5", "W6", "W9", "W10"}:
                with progress("seeding W1's images"):
                    images = seed_w1(bench, args.images)
            steps: list[tuple[str, Callable[[], list[Workload]]]] = [
                ("W1 W2", lambda: w1_w2(bench, args.rounds, images)),
                ("W3", lambda: [w3(bench, args.rounds, args.large_mib * MiB)]),
                ("W4", lambda: [w4(bench, args.rounds, images)]),
                ("W5", lambda: [w5(bench, args.rounds)]),
                ("W6", lambda: [w6(bench, args.rounds)]),
                ("W7", lambda: [w7(bench, args.rounds, images)]),
                ("W8", lambda: [w8(bench, args.rounds, images)]),
                ("W9", lambda: [w9(bench, args.rounds, args.large_mib * MiB)]),
                ("W10", lambda: w10(bench, args.rounds)),
            ]
            results: list[Workload] = []
            for names, step in steps:
                if only & set(names.split()):
                    with progress(names):
                        results += step()
            data = report(results)
            took = time.monotonic() - started
            data["machine"] = f"{machine(load, took)}; registries on {args.registry_storage}"
            (ROOT / "benchmarks" / "results.json").write_text(json.dumps(data, indent=2) + "\n")
        finally:
            bench.source.stop()
    print(f"\nmachine: {data['machine']}")
