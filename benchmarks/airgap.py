"""Air-gap timings and memory: mirror save / inspect / load, and skopeo on the same archive.

``python -m benchmarks.airgap [--big-mib N]``: a local registry holds one image with an N MiB
layer plus three small images; each command runs as a subprocess under ``/usr/bin/time`` for
its peak RSS. ``inspect`` also runs on a 1 GiB sparse archive (its layer is a hole).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.imagefactory import Blob, make_image, make_index, push, sha256
from tests.registries import Registry, start_registry
from tests.skopeo import run_skopeo
from tests.test_airgap import sparse_archive

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def run(cmd: list[str], stdin: str = "") -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``cmd``; exits if it fails."""
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        env = {**os.environ, "DOCKER_CONFIG": str(ROOT / "tests/data/no-docker-config")}
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            input=stdin, capture_output=True, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
        return seconds, int(Path(rss.name).read_text().split()[-1]) / 1024


def seed(registry: Registry, big_mib: int) -> Path:
    """Push the images under fake hosts; return a lock naming them."""
    data = os.urandom(big_mib * MiB)
    big = Blob(data, sha256(data), "application/vnd.oci.image.layer.v1.tar+gzip", sha256(data))
    base = [make_image("bench-base", [2 * MiB]).layers[0]]
    images = {
        "ghcr.io/bench/big:1": make_image("big", [big], base=base),
        "gcr.io/bench/index:1": make_index(
            [
                make_image(f"idx-{a}", [MiB], base=base, platform=("linux", a))
                for a in ("amd64", "arm64")
            ]
        ),
        "docker.io/library/small:1": make_image("small", [MiB], base=base, fmt="docker"),
    }
    lock = registry.workdir / "images.lock"
    lines = ["version = 1"]
    for source, artifact in images.items():
        host, rest = source.split("/", 1)
        repo, tag = rest.rsplit(":", 1)
        push(registry, f"{host}/{repo}", tag, artifact)
        lines += ["", "[[images]]", f'source = "{source}"']
    lock.write_text("\n".join(lines) + "\n")
    return lock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big-mib", type=int, default=512, help="Size of the big layer.")
    args = parser.parse_args()
    mirror = [sys.executable, "-m", "mirror"]
    with tempfile.TemporaryDirectory(prefix="airgap-bench-") as tmp:
        work = Path(tmp)
        source = start_registry("anon", work / "source")
        dest = start_registry("basic", work / "dest")
        try:
            lock = seed(source, args.big_mib)
            hosts = ("ghcr.io", "gcr.io", "docker.io")
            endpoints = [a for h in hosts for a in ("--endpoint", f"{h}={source.url}/{h}")]
            archive = work / "images.tar"
            creds = ["--registry-username", "user", "--registry-password-stdin"]
            rows = [
                ("mirror save (tar)", run([*mirror, "save", "--lock", str(lock), "--output",
                                           str(archive), "--quiet", *endpoints])),
                ("mirror inspect", run([*mirror, "inspect", "--input", str(archive)])),
                ("mirror load", run([*mirror, "load", "--input", str(archive), "--registry-server",
                                     f"{dest.host}/nsm", "--quiet", *creds], "password\n")),
            ]  # fmt: skip
            started = time.perf_counter()
            run_skopeo(
                "copy", "--dest-creds", "user:password", "--dest-tls-verify=false",
                f"oci-archive:{archive}:ghcr.io/bench/big:1", f"docker://{dest.host}/skopeo/big:1",
            )  # fmt: skip
            skopeo_big = time.perf_counter() - started
            sparse = work / "sparse.tar"
            sparse_archive(sparse, 1 << 30)
            rows.append(("mirror inspect (1 GiB sparse)", run([*mirror, "inspect", "--input",
                                                                str(sparse)])))  # fmt: skip
        finally:
            source.stop()
            dest.stop()
        size = archive.stat().st_size / MiB
        print(f"archive: {size:.1f} MiB (big layer {args.big_mib} MiB)")
        for name, (seconds, rss) in rows:
            print(f"{name:32} {seconds:7.2f} s  peak RSS {rss:6.1f} MiB")
        print(f"{'skopeo copy big image (load)':32} {skopeo_big:7.2f} s")


if __name__ == "__main__":
    main()
