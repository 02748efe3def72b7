"""The quick-start demo: mirror the embedded NSM 2.0.0 lock into a throwaway registry.

No internet is needed: a local "public" registry stands in for docker-registry.nginx.com,
gcr.io, docker.io, ghcr.io and registry.k8s.io (small synthetic images under the real
names, reached with --endpoint), a local chart repository stands in for helm.nginx.com (a
small synthetic chart under the real name), and a second registry with a password is the
private one. `deploy render` then renders the mesh chart from the private registry with Helm's
engine, every image pointed at the private registry.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mirror.image.lock import load_lock
from tests.chartrepo import build_chart, serve_charts
from tests.imagefactory import make_image, make_index, make_layer, push
from tests.registries import start_registry

MINI_MESH = Path(__file__).resolve().parent.parent / "tests" / "data" / "charts" / "mini-mesh"


def run(*args: str, stdin: str | None = None) -> None:
    """Show and run a command; stop the demo if it fails."""
    shown = " ".join(args)
    print(f"\n$ {shown}", flush=True)
    subprocess.run(args, input=stdin, text=True, check=True)


def main() -> None:
    """Start the registries, seed the stand-in public one, sync, verify, list, render."""
    with tempfile.TemporaryDirectory(prefix="meshlift-demo-") as tmp:
        public = start_registry("anon", Path(tmp) / "public")
        private = start_registry(
            "basic", Path(tmp) / "private", username="demo", password="demo-pw"
        )
        lock = load_lock(None)
        charts = Path(tmp) / "charts"
        charts.mkdir()
        # The stand-in for helm.nginx.com serves the mesh-shaped test chart under the real name.
        mesh_files = {
            str(f.relative_to(MINI_MESH)): f.read_text()
            for f in sorted(MINI_MESH.rglob("*"))
            if f.is_file() and f.name != "Chart.yaml"
        }
        for chart in lock.charts:
            build_chart(charts, chart.name, chart.version, files=mesh_files)
        chart_repo = serve_charts(charts, "/helm/stable")
        try:
            base = [make_layer("demo-base", 64_000)]
            hosts = sorted({e.source.registry for e in lock.entries})
            for n, entry in enumerate(lock.entries):
                images = [make_image(f"{entry.source}-amd64", [32_000 + n * 1000], base=base)]
                if n % 2 == 0:
                    arm = ("linux", "arm64")
                    images.append(
                        make_image(f"{entry.source}-arm64", [30_000], base=base, platform=arm)
                    )
                artifact = make_index(images) if len(images) > 1 else images[0]
                repo = f"{entry.source.registry}/{entry.source.repository}"
                push(public, repo, entry.source.tag, artifact)
            endpoints = [a for h in hosts for a in ("--endpoint", f"{h}={public.url}/{h}")]
            endpoints += ["--endpoint", f"helm.nginx.com=http://{chart_repo.host}/helm"]
            server = f"{private.host}/nsm"
            mirror = [sys.executable, "-m", "mirror"]
            creds = ["--registry-username", "demo", "--registry-password-stdin"]
            run(*mirror, "sync", "--registry-server", server, *creds, *endpoints, stdin="demo-pw\n")
            run(
                *mirror,
                "verify",
                "--registry-server",
                server,
                *creds,
                *endpoints,
                stdin="demo-pw\n",
            )
            run(*mirror, "list", "--registry-server", server)
            print(
                f"\nThe images and the chart landed in the private registry {private.url}"
                f" under {server}/."
            )
            out = Path(tmp) / "manifests"
            # No --chart: render takes the lock's chart from the private registry, as mirrored.
            deploy = [sys.executable, "-m", "deploy", "render", "--registry-server", server]
            run(
                *deploy,
                *creds,
                "--disable-public-images",
                "-o",
                str(out),
                stdin="demo-pw\n",
            )
            for name in ("deployment-nginx-mesh-controller", "configmap-meshconfig"):
                shown = next(out.glob(f"*-{name}.yaml"))
                print(f"\n{shown.name} (one of {len(list(out.glob('*.yaml')))} manifests):")
                print(shown.read_text())
        finally:
            chart_repo.stop()
            public.stop()
            private.stop()


if __name__ == "__main__":
    main()
