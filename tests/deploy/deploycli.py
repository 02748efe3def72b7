"""Run ``deploy`` in-process as a user would (stdout and stderr apart), and read its results."""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from deploy.cli.app import cli
from tests.fakekube.fixtures import KubeUnderTest

R = "reg.example:5000"
# A small chart shaped like NGINX Service Mesh's (CRDs, meshconfig, workloads, hooks, schema).
MINI_MESH = str(Path(__file__).parents[1] / "data" / "charts" / "mini-mesh")
# The login meshlift 0.x gave the chart in place of the real credentials (defect 6 of issue 23).
PLACEHOLDER = "replaced-by-meshlift"
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def package_chart(directory: str = MINI_MESH) -> bytes:
    """The chart ``directory`` as a ``.tgz``, laid out as ``helm package`` lays it out."""
    buffer = io.BytesIO()
    root = Path(directory)
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.add(path, f"{root.name}/{path.relative_to(root)}")
    return buffer.getvalue()


def run_deploy(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """``deploy ARGS`` with no MESHLIFT_* or KUBECONFIG from the caller's environment."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MESHLIFT_")}
    clean["KUBECONFIG"] = None
    return CliRunner().invoke(cli, list(args), input=input, env={**clean, **(env or {})})


def ok(result: Result) -> Result:
    """``result`` if it exited 0; else fail showing what it printed."""
    assert result.exit_code == 0, (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        f"\nexception: {result.exception!r}"
    )
    return result


def one_line_error(result: Result, code: int, only: bool = True) -> str:
    """The error line of a failed run that exited ``code``: one line, never a traceback.

    ``only``: stderr holds nothing else (else progress lines may come before it).
    """
    assert result.exit_code == code, (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == lines[-1:], result.stderr
    assert not only or len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def kubectl_secret(server: str, username: str, password: str) -> dict[str, Any]:
    """The Secret ``kubectl create secret docker-registry`` makes, as JSON (kubectl on PATH)."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    done = subprocess.run(
        [
            kubectl, "create", "secret", "docker-registry", "nginx-mesh-registry-key",
            f"--docker-server={server}", f"--docker-username={username}",
            f"--docker-password={password}", "--dry-run=client", "-o", "json",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def decoded_config(secret: dict[str, Any]) -> dict[str, Any]:
    """The ``.dockerconfigjson`` of a Secret, decoded."""
    return dict(json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])))


def strings_in(node: Any) -> Iterator[str]:
    """Every string in ``node``, and the text of every base64 run inside one (Secret data)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)
    elif isinstance(node, str):
        yield node
        for run in _BASE64.findall(node):
            try:
                yield base64.b64decode(run, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                continue


def apply_mesh(kube: KubeUnderTest, namespace: str, *extra: str) -> Result:
    """``deploy apply`` of the mini chart into ``namespace`` with credentials, no preflight."""
    return ok(
        run_deploy(
            "apply",
            "--registry-server",
            R,
            "--chart",
            MINI_MESH,
            "--namespace",
            namespace,
            "--skip-preflight",
            "--registry-username",
            "u",
            *kube.cli_args(),
            *extra,
            env={"MESHLIFT_REGISTRY_PASSWORD": "pw"},
        )
    )
