"""Run the ``mirror`` command as a user would, and a small "public" image set to mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.imagefactory import Image, Index, make_image, make_index, make_layer, push
from tests.registries import Registry

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_mirror(
    *args: str, input: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m mirror ARGS`` in a clean environment (no user Docker config)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    full_env.setdefault("DOCKER_CONFIG", str(REPO_ROOT / "tests" / "data" / "no-docker-config"))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mirror", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd or REPO_ROOT,
        env=full_env,
        timeout=240,
    )


def start_mirror(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m mirror ARGS`` as :func:`run_mirror` would, without waiting for it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    clean.setdefault("DOCKER_CONFIG", str(REPO_ROOT / "tests" / "data" / "no-docker-config"))
    return subprocess.Popen(
        [sys.executable, "-m", "mirror", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**clean, **(env or {})},
    )


def load_into(
    archive: Path | str, dest: Registry, prefix: str = "nsm", *extra: str
) -> subprocess.CompletedProcess[str]:
    """``mirror load`` of ``archive`` into ``dest``/``prefix``, with ``dest``'s login if it has
    one (password on standard input)."""
    login, password = [], None
    if dest.username:
        login = ["--registry-username", dest.username, "--registry-password-stdin"]
        password = f"{dest.password}\n"
    return run_mirror(
        "load", "--input", str(archive), "--registry-server", f"{dest.host}/{prefix}",
        *login, *extra, input=password,
    )  # fmt: skip


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report a ``--output json`` run printed."""
    try:
        return dict(json.loads(result.stdout))
    except ValueError as exc:
        raise AssertionError(f"no JSON report; stderr: {result.stderr}") from exc


@dataclass
class PublicImages:
    """Images pushed to a local registry under fake public hosts, reached via --endpoint."""

    registry: Registry
    prefix: str
    artifacts: dict[str, Image | Index] = field(default_factory=dict)

    def endpoint_args(self) -> list[str]:
        """``--endpoint HOST=URL/prefix/HOST`` for every fake public host."""
        hosts = sorted({src.split("/", 1)[0] for src in self.artifacts})
        return [
            a for h in hosts for a in ("--endpoint", f"{h}={self.registry.url}/{self.prefix}/{h}")
        ]

    def write_lock(self, path: Path, sources: list[str] | None = None, extra: str = "") -> Path:
        """A lock listing ``sources`` (default: all)."""
        lines = ["version = 1", ""]
        for source in sources or list(self.artifacts):
            lines += ["[[images]]", f'source = "{source}"', extra, ""]
        path.write_text("\n".join(lines))
        return path

    def add(self, source: str, artifact: Image | Index) -> None:
        """Push ``artifact`` as the public image ``source`` (a full host/path:tag reference)."""
        host, rest = source.split("/", 1)
        repo, tag = rest.rsplit(":", 1)
        push(self.registry, f"{self.prefix}/{host}/{repo}", tag, artifact)
        self.artifacts[source] = artifact


def publish_default_set(registry: Registry) -> PublicImages:
    """Four images under three hosts: OCI index, Docker manifest list, OCI and Docker images.

    All share one base layer, as real images built on one distro do.
    """
    public = PublicImages(registry, f"public-{uuid.uuid4().hex[:8]}")
    base = [make_layer("shared-base", 300_000)]
    public.add(
        "gcr.io/spiffe-io/spire-agent:1.5.6",
        make_index(
            [
                make_image("spire-amd64", [120_000], base=base),
                make_image("spire-arm64", [110_000], base=base, platform=("linux", "arm64")),
            ]
        ),
    )
    public.add(
        "docker.io/library/nats:2.9-alpine",
        make_index(
            [
                make_image("nats-amd64", [90_000], base=base, fmt="docker"),
                make_image(
                    "nats-arm", [80_000], base=base, platform=("linux", "arm", "v7"), fmt="docker"
                ),
            ],
            fmt="docker",
        ),
    )
    public.add(
        "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0",
        make_image("sidecar", [150_000, 20_000], base=base),
    )
    public.add(
        "docker.io/curlimages/curl:latest", make_image("curl", [60_000], base=base, fmt="docker")
    )
    return public
