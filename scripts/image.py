"""Build meshlift's container image reproducibly and write it as dist/meshlift-<version>.oci.tar.

podman (buildah) builds the Containerfile with ``--timestamp`` set to the last commit's time,
which fixes the config's dates and every file's mtime, from a wheelhouse made here with this
machine's pip configuration (the build itself has no network). The base is ``$BASE`` when set
(``python:3.11-slim`` for people with Docker Hub), else a minimal Debian bookworm with python3
and CA certificates made by mmdebstrap from Debian's archive, dated by the same commit.
The archive is podman's OCI layout with Docker's ``manifest.json`` beside ``index.json``, as
``docker save`` of Docker 25+ writes it, so ``docker load`` of any Docker reads it as OCI tools do;
its members are in a fixed order with fixed dates, so one image gives one archive.
The work (wheelhouse, Debian root filesystem) and podman's storage are under build/, never in
the machine's own storage; ``--build DIR --dist DIR`` puts them elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
BASE_PACKAGES = "python3,ca-certificates"
# Not installed into the Debian base: documentation, manuals, translations, and glibc's iconv
# converters (gconv, 8 MB; Python has codecs of its own).
DPKG_EXCLUDES = (
    "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
    "/usr/lib/*/gconv/*",
)  # fmt: skip

# No network in a build, and no layer cache: buildah reuses a cached layer whatever --timestamp
# says, so an earlier build's file dates would end up in this one.
BUILD = ("--network", "none", "--layers=false")


def run(*args: str, env: dict[str, str] | None = None) -> str:
    """Run a command, show it and its duration, return its stdout; stop the build if it fails."""
    print("+", " ".join(args), file=sys.stderr, flush=True)
    started = time.monotonic()
    done = subprocess.run(args, stdout=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"image: {args[0]} exited with {done.returncode}")
    print(f"  ({time.monotonic() - started:.1f} s)", file=sys.stderr, flush=True)
    return done.stdout.strip()


def git(*args: str) -> str:
    """``git ARGS`` in the repository."""
    return run("git", "-C", str(ROOT), *args)


class Podman:
    """podman on storage of its own (vfs works on any filesystem and in containers)."""

    def __init__(self, storage: Path) -> None:
        self.storage = storage.resolve()
        # podman refuses a run root longer than 50 characters, and remembers the one it had
        key = hashlib.sha256(str(self.storage).encode()).hexdigest()[:12]
        self.run_root = Path(tempfile.gettempdir()) / f"meshlift-podman-{key}"

    def __call__(self, *args: str) -> str:
        """``podman ARGS`` on this storage."""
        return run(
            "podman", "--root", str(self.storage / "root"), "--runroot", str(self.run_root),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
            *args,
        )  # fmt: skip


def wheelhouse(target: Path, epoch: str) -> None:
    """meshlift's wheel, every dependency's and pip's, fetched as pip is configured here."""
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch}
    pip = [sys.executable, "-m", "pip", "--quiet"]
    run(*pip, "wheel", "--wheel-dir", str(target), "--no-deps", str(ROOT), env=env)
    (meshlift,) = target.glob("meshlift-*.whl")
    run(*pip, "download", "--only-binary", ":all:", "--dest", str(target), str(meshlift), "pip")


def debian_base(podman: Podman, work: Path, epoch: str) -> str:
    """A Debian base image made by mmdebstrap, dated ``epoch``; its name in podman storage.

    One made earlier with the same date and options is reused.
    """
    options = [
        "--variant=essential", f"--include={BASE_PACKAGES}",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        '--customize-hook=rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*',
    ]  # fmt: skip
    recipe = hashlib.sha256("\0".join(options).encode()).hexdigest()[:12]
    name = f"localhost/meshlift-base:{SUITE}-{epoch}-{recipe}"
    if podman("images", "--quiet", name):
        return name
    context = work / "base"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    run(
        "mmdebstrap",
        "--quiet",
        *options,
        "--format=tar",
        SUITE,
        str(context / "rootfs.tar"),
        env={**os.environ, "SOURCE_DATE_EPOCH": epoch},
    )
    (context / "Containerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n')
    # buildah notes the digest of a "scratch" base that it makes anew each time: blank it
    blank = [f"--annotation=org.opencontainers.image.base.{key}=" for key in ("digest", "name")]
    podman("build", *BUILD, *blank, "--quiet", "--timestamp", epoch, "-t", name, str(context))
    return name


def prune(podman: Podman, keep: str) -> None:
    """Remove what earlier builds left: untagged images and Debian bases of other commits."""
    bases = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/meshlift-base")
    stale = [base for base in bases.split() if base != keep]
    if stale:
        podman("rmi", *stale)
    podman("image", "prune", "--force")


def docker_manifest(layout: Path, tag: str) -> bytes:
    """Docker's ``manifest.json`` for the one image of an OCI layout: its config and layers by
    their paths in the layout, so ``docker load`` reads the same blobs OCI tools do."""
    (entry,) = json.loads((layout / "index.json").read_bytes())["manifests"]
    manifest = json.loads((layout / blob(entry["digest"])).read_bytes())
    image = {
        "Config": blob(manifest["config"]["digest"]),
        "RepoTags": [tag],
        "Layers": [blob(layer["digest"]) for layer in manifest["layers"]],
    }
    return json.dumps([image], separators=(",", ":")).encode()


def blob(digest: str) -> str:
    """The path of a sha256 blob in an OCI layout."""
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def tar_member(name: str, epoch: int, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    """A member header owned by root and dated ``epoch``."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, epoch, 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def write_archive(layout: Path, tag: str, archive: Path, epoch: int) -> None:
    """Tar the OCI layout with Docker's ``manifest.json`` added; ``index.json`` as podman wrote it.

    Members come in a fixed order (layout files, directories, blobs by digest) with fixed
    owners and dates, so the archive's bytes depend only on the image.
    """
    files = {name: (layout / name).read_bytes() for name in ("oci-layout", "index.json")}
    files["manifest.json"] = docker_manifest(layout, tag)
    blobs = sorted((layout / "blobs" / "sha256").iterdir())
    partial = archive.with_name(archive.name + ".part")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            tar.addfile(tar_member(name, epoch, len(data)), io.BytesIO(data))
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(tar_member(directory, epoch, directory=True))
        for path in blobs:
            with path.open("rb") as handle:
                info = tar_member(f"blobs/sha256/{path.name}", epoch, path.stat().st_size)
                tar.addfile(info, handle)
    partial.replace(archive)


def main() -> None:
    """Build ``meshlift:<version>`` and write its OCI archive; print the archive's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "build")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    options = parser.parse_args()
    podman, started = Podman(options.build / "podman"), time.monotonic()
    work = options.build.resolve() / "image"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    epoch = git("log", "-1", "--format=%ct")
    revision = git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain") else "")
    created = datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    origin = git("config", "--default", "", "--get", "remote.origin.url")
    source = origin if origin.startswith("https://") else "unknown"  # never a local path
    context = work / "context"
    wheelhouse(context / "wheels", epoch)
    base = os.environ.get("BASE") or debian_base(podman, work, epoch)
    name = f"localhost/meshlift:{version}"
    args = {"BASE": base, "SOURCE_DATE_EPOCH": epoch, "VERSION": version}
    args |= {"REVISION": revision, "CREATED": created, "SOURCE": source}
    podman(
        "build", *BUILD, "--timestamp", epoch, "--file", str(ROOT / "Containerfile"),
        *(f"--build-arg={key}={value}" for key, value in args.items()),
        "--tag", name, str(context),
    )  # fmt: skip
    options.dist.mkdir(parents=True, exist_ok=True)
    archive = options.dist / f"meshlift-{version}.oci.tar"
    archive.unlink(missing_ok=True)
    layout = work / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    podman("push", "--quiet", name, f"oci:{layout}:meshlift:{version}")
    write_archive(layout, f"meshlift:{version}", archive, int(epoch))
    shutil.rmtree(layout)
    prune(podman, keep=base)
    print(f"image: {archive} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(archive)


if __name__ == "__main__":
    main()
