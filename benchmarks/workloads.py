"""The benchmark workloads of issue 7, timed as whole commands, alternating tools per round.

Each measurement gets a fresh destination registry; the seeded source is shared. skopeo runs
with an isolated blob-info cache per run (tests/skopeo.py). Peak RSS comes from ``wait4``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.imagefactory import Blob, make_image, make_index, push, sha256
from tests.registries import Registry, start_registry
from tests.skopeo import isolated_skopeo_command

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


@dataclass
class Run:
    """One timed command (or group of commands run together)."""

    seconds: float
    peak_rss_mib: float


@dataclass
class Workload:
    """Times per tool, per round."""

    name: str
    target: str
    runs: dict[str, list[Run]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, tool: str, run: Run) -> None:
        self.runs.setdefault(tool, []).append(run)

    def median(self, tool: str) -> float:
        return statistics.median(r.seconds for r in self.runs[tool])

    def peak(self, tool: str) -> float:
        return max(r.peak_rss_mib for r in self.runs[tool])


def timed(commands: Sequence[Sequence[str]], stdin: str = "") -> Run:
    """Run ``commands`` concurrently; wall time of the group and the largest peak RSS.

    Peak RSS comes from ``/usr/bin/time`` around each command: a child forked from this
    (large) process would inherit its high-water mark, so ``wait4`` here would overstate it.
    """
    env = {**os.environ, "DOCKER_CONFIG": str(ROOT / "tests/data/no-docker-config")}
    with tempfile.TemporaryDirectory(prefix="rss-") as tmp:
        outputs = [Path(tmp) / f"{n}.rss" for n in range(len(commands))]
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["/usr/bin/time", "-f", "%M", "-o", str(out), *c], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
            )
            for c, out in zip(commands, outputs, strict=True)
        ]  # fmt: skip
        for proc in procs:
            _, stderr = proc.communicate(stdin)
            if proc.returncode != 0:
                raise SystemExit(f"benchmark command failed: {proc.args}\n{stderr[-2000:]}")
        seconds = time.perf_counter() - started
        peak_kib = max(int(out.read_text().split()[-1]) for out in outputs)
    return Run(seconds, peak_kib / 1024)


class Bench:
    """Registries and seeded images shared by the workloads."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.source = start_registry("anon", workdir / "source")
        self._n = 0

    def fresh_destination(self) -> Registry:
        self._n += 1
        return start_registry("basic", self.workdir / f"dest-{self._n}")

    def drop(self, registry: Registry) -> None:
        registry.stop()
        shutil.rmtree(registry.workdir, ignore_errors=True)

    def mirror(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mirror", *args]

    def skopeo(self, *args: str) -> list[str]:
        return isolated_skopeo_command(self.workdir / f"skopeo-{time.monotonic_ns()}", *args)


def random_blob(seed: str, size: int) -> Blob:
    """``size`` incompressible bytes (not gzip: registries do not look inside layers)."""
    import hashlib

    data = hashlib.shake_256(seed.encode()).digest(size) if size <= 64 * MiB else os.urandom(size)
    return Blob(data, sha256(data), "application/vnd.oci.image.layer.v1.tar+gzip", sha256(data))


def seed_w1(bench: Bench, count: int) -> list[str]:
    """``count`` indexes of two platforms: a shared 2 MiB base and a unique 2.5 MiB layer each."""
    bases = {arch: random_blob(f"base-{arch}", 2 * MiB) for arch in ("amd64", "arm64")}

    def one(i: int) -> str:
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
        push(bench.source, repo, "1.0", make_index(images))
        return repo

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def w1_lock(bench: Bench, repos: Sequence[str]) -> Path:
    lock = bench.workdir / "w1.lock"
    lock.write_text(
        "version = 1\n"
        + "".join(f'\n[[images]]\nsource = "bench.example/{r}:1.0"\n' for r in repos)
    )
    return lock


def endpoint(bench: Bench) -> list[str]:
    return ["--endpoint", f"bench.example={bench.source.url}"]


def mirror_sync(bench: Bench, lock: Path, dest: Registry, jobs: int = 4) -> list[str]:
    return bench.mirror(
        "sync", "--lock", str(lock), "--registry-server", f"{dest.host}/nsm", *endpoint(bench),
        "--registry-username", "user", "--registry-password-stdin", "--quiet", "--jobs", str(jobs),
        "--state-dir", str(bench.workdir / "state"),
    )  # fmt: skip


def skopeo_sync(bench: Bench, repos: Sequence[str], dest: Registry) -> list[str]:
    src = bench.workdir / "skopeo-sync.yaml"
    lines = [f"{bench.source.host}:", "  tls-verify: false", "  images:"]
    lines += [f'    {r}: ["1.0"]' for r in repos]
    src.write_text("\n".join(lines) + "\n")
    return bench.skopeo(
        "sync", "--all", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
        "--dest-creds", "user:password", str(src), f"{dest.host}/nsm",
    )  # fmt: skip


def skopeo_copy(bench: Bench, src: str, dst: str, dest: Registry | None) -> list[str]:
    creds = ["--dest-creds", "user:password"] if dest else []
    return bench.skopeo(
        "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", *creds, src, dst
    )


def parallel_skopeo_copies(bench: Bench, repos: Sequence[str], dest: Registry) -> Run:
    """Four workers of ``skopeo copy --all``, each taking the next image."""
    queue = list(repos)
    started = time.perf_counter()
    peaks: list[float] = []

    def worker() -> None:
        while queue:
            repo = queue.pop()
            src, dst = (
                f"docker://{bench.source.host}/{repo}:1.0",
                f"docker://{dest.host}/nsm/{repo.rsplit('/', 1)[-1]}:1.0",
            )
            peaks.append(timed([skopeo_copy(bench, src, dst, dest)]).peak_rss_mib)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(worker) for _ in range(4)]:
            future.result()
    return Run(time.perf_counter() - started, max(peaks))


def get_requests(registry: Registry, mark: int) -> int:
    return sum(1 for r in registry.requests(mark) if r.method == "GET")


def w1_w2(bench: Bench, rounds: int, repos: Sequence[str]) -> tuple[Workload, Workload]:
    lock = w1_lock(bench, repos)
    w1 = Workload("W1 cold sync", "meshlift <= 0.5 x skopeo sync, <= 0.8 x 4 parallel skopeo copy")
    w2 = Workload("W2 no-op re-sync", "meshlift <= 0.1 x skopeo re-sync; zero GETs")
    gets = []
    for _ in range(rounds):
        dest = bench.fresh_destination()
        w1.add("meshlift", timed([mirror_sync(bench, lock, dest)], stdin="password\n"))
        src_mark, dst_mark = bench.source.mark(), dest.mark()
        w2.add("meshlift", timed([mirror_sync(bench, lock, dest)], stdin="password\n"))
        gets.append(get_requests(bench.source, src_mark) + get_requests(dest, dst_mark))
        bench.drop(dest)
        dest = bench.fresh_destination()
        w1.add("skopeo sync", timed([skopeo_sync(bench, repos, dest)]))
        w2.add("skopeo sync", timed([skopeo_sync(bench, repos, dest)]))
        bench.drop(dest)
        dest = bench.fresh_destination()
        w1.add("skopeo copy x4", parallel_skopeo_copies(bench, repos, dest))
        bench.drop(dest)
    w2.notes.append(f"GET requests during meshlift re-syncs: {gets}")
    return w1, w2


def w3(bench: Bench, rounds: int, size: int) -> Workload:
    layer = random_blob("w3", size)
    image = make_image("w3", [layer])
    push(bench.source, "bench/w3/big", "1.0", image)
    del layer
    lock = bench.workdir / "w3.lock"
    lock.write_text('version = 1\n[[images]]\nsource = "bench.example/bench/w3/big:1.0"\n')
    work = Workload(
        f"W3 one {size // MiB} MiB layer", "meshlift <= 1.0 x skopeo copy; RSS <= 150 MiB"
    )
    for _ in range(rounds):
        dest = bench.fresh_destination()
        work.add("meshlift", timed([mirror_sync(bench, lock, dest)], stdin="password\n"))
        bench.drop(dest)
        dest = bench.fresh_destination()
        src, dst = (
            f"docker://{bench.source.host}/bench/w3/big:1.0",
            f"docker://{dest.host}/nsm/big:1.0",
        )
        work.add("skopeo copy", timed([skopeo_copy(bench, src, dst, dest)]))
        bench.drop(dest)
    return work


def w4(bench: Bench, rounds: int, repos: Sequence[str]) -> Workload:
    lock = w1_lock(bench, repos)
    work = Workload(
        "W4 air gap (save + load)", "meshlift <= 1.0 x skopeo copy to oci-archive and back"
    )
    for n in range(rounds):
        archive = bench.workdir / f"w4-{n}.tar"
        dest = bench.fresh_destination()
        save = timed(
            [bench.mirror("save", "--lock", str(lock), "--output", str(archive), *endpoint(bench))]
        )
        load = timed(
            [bench.mirror("load", "--input", str(archive), "--registry-server", f"{dest.host}/nsm",
                          "--registry-username", "user", "--registry-password-stdin", "--quiet")],
            stdin="password\n",
        )  # fmt: skip
        work.add(
            "meshlift", Run(save.seconds + load.seconds, max(save.peak_rss_mib, load.peak_rss_mib))
        )
        archive.unlink()
        bench.drop(dest)
        dest = bench.fresh_destination()
        out = bench.workdir / f"w4-skopeo-{n}"
        out.mkdir()
        to_archive = [
            skopeo_copy(
                bench, f"docker://{bench.source.host}/{r}:1.0", f"oci-archive:{out}/{i}.tar", None
            )
            for i, r in enumerate(repos)
        ]
        back = [
            skopeo_copy(
                bench,
                f"oci-archive:{out}/{i}.tar",
                f"docker://{dest.host}/nsm/{r.rsplit('/', 1)[-1]}:1.0",
                dest,
            )
            for i, r in enumerate(repos)
        ]
        first, second = _in_fours(to_archive), _in_fours(back)
        work.add(
            "skopeo oci-archive x4",
            Run(first.seconds + second.seconds, max(first.peak_rss_mib, second.peak_rss_mib)),
        )
        shutil.rmtree(out)
        bench.drop(dest)
    work.notes.append(
        "skopeo: one oci-archive per image (it cannot append to an archive), 4 at a time"
    )
    return work


def _in_fours(commands: list[list[str]]) -> Run:
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda c: timed([c]), commands))
    return Run(time.perf_counter() - started, max(r.peak_rss_mib for r in runs))


def w5(bench: Bench, rounds: int) -> Workload:
    work = Workload("W5 start-up", "<= 0.4 s each")
    for _ in range(max(rounds, 5)):
        work.add("mirror --help", timed([bench.mirror("--help")]))
        work.add("mirror list", timed([bench.mirror("list")]))
    return work


def w6(bench: Bench, rounds: int) -> Workload:
    """``mirror inspect`` of a 1 GiB archive (its layer a hole: only a reader of blob contents
    would spend time on it)."""
    from tests.test_airgap import sparse_archive

    archive = bench.workdir / "sparse-1gib.tar"
    sparse_archive(archive, 1 << 30)
    work = Workload("W6 inspect a 1 GiB archive", "well under 1 s (reads no blob contents)")
    for _ in range(max(rounds, 3)):
        work.add("mirror inspect", timed([bench.mirror("inspect", "--input", str(archive))]))
    archive.unlink()
    return work


def report(workloads: Sequence[Workload]) -> dict[str, object]:
    """Print the table; return the JSON shape of the results."""
    out: dict[str, object] = {}
    header = f"{'workload':34} {'tool':24} {'median s':>9} {'ratio':>7} {'peak RSS MiB':>13}"
    print(f"\n{header}  ratio per round (meshlift/tool)")
    for work in workloads:
        ours = work.runs.get("meshlift", [])
        base = work.median("meshlift") if ours else None
        rows = {}
        for tool, runs in work.runs.items():
            median = work.median(tool)
            ratio = f"{base / median:.2f}" if base and tool != "meshlift" else ""
            rounds = [round(m.seconds / r.seconds, 2) for m, r in zip(ours, runs, strict=False)]
            shown = " ".join(f"{x:.2f}" for x in rounds) if ratio else ""
            line = f"{work.name:34} {tool:24} {median:9.3f} {ratio:>7} {work.peak(tool):13.1f}"
            print(f"{line}  {shown}")
            rows[tool] = {
                "median_s": round(median, 3),
                "rounds_s": [round(r.seconds, 3) for r in runs],
                "ratio_per_round": rounds if ratio else [],
                "peak_rss_mib": round(work.peak(tool), 1),
            }
        for note in work.notes:
            print(f"{'':34} note: {note}")
        print(f"{'':34} target: {work.target}")
        out[work.name] = {"target": work.target, "tools": rows, "notes": work.notes}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--only", nargs="*", default=["W1", "W2", "W3", "W4", "W5", "W6"])
    args = parser.parse_args()
    # As installed by pip, meshlift runs from bytecode; compile it even where the environment
    # sets PYTHONDONTWRITEBYTECODE, so no timed run pays for compiling the sources.
    for package in ("mirror", "deploy"):
        compileall.compile_dir(ROOT / package, quiet=1)
    with tempfile.TemporaryDirectory(prefix="meshlift-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            results: list[Workload] = []
            if {"W1", "W2", "W4"} & set(args.only):
                repos = seed_w1(bench, args.images)
                if {"W1", "W2"} & set(args.only):
                    results += w1_w2(bench, args.rounds, repos)
                if "W4" in args.only:
                    results.append(w4(bench, args.rounds, repos))
            if "W3" in args.only:
                results.append(w3(bench, args.rounds, args.large_mib * MiB))
            if "W5" in args.only:
                results.append(w5(bench, args.rounds))
            if "W6" in args.only:
                results.append(w6(bench, args.rounds))
            data = report(results)
            (ROOT / "benchmarks" / "results.json").write_text(json.dumps(data, indent=2) + "\n")
        finally:
            bench.source.stop()
