"""Run ``deploy`` in-process as a user would (stdout and stderr apart), and read its results."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from click.testing import CliRunner, Result

from deploy.cli import cli
from tests.fakekube.fixtures import KubeUnderTest

R = "reg.example:5000"


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


def decoded_config(secret: dict[str, Any]) -> dict[str, Any]:
    """The ``.dockerconfigjson`` of a Secret, decoded."""
    return dict(json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])))


def apply_mesh(kube: KubeUnderTest, namespace: str, *extra: str) -> Result:
    """``deploy apply`` of the bundle into ``namespace`` with credentials, no preflight/wait."""
    return ok(
        run_deploy(
            "apply",
            "--registry-server",
            R,
            "--namespace",
            namespace,
            "--skip-preflight",
            "--no-wait",
            "--registry-username",
            "u",
            *kube.cli_args(),
            *extra,
            env={"MESHLIFT_REGISTRY_PASSWORD": "pw"},
        )
    )
