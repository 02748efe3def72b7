"""``python -m deploy`` as installed: the entry point maps errors to one line and an exit code."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

from tests.deploy.deploycli import MINI_MESH
from tests.fakekube.fixtures import KubeUnderTest


def test_module_entry_point_reports_bad_input_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy",
            "render",
            "--registry-server",
            "r.example",
            "-o",
            "-",
            "--registry-username",
            "u",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "Error: --registry-username must be used with --registry-password-stdin,"
        " --registry-password or MESHLIFT_REGISTRY_PASSWORD"
    )
    assert done.stdout == ""


def test_debug_logs_never_show_the_password(fake_kube: KubeUnderTest) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy",
            "--debug",
            "apply",
            "--registry-server",
            "r.example",
            "--chart",
            MINI_MESH,
            "--registry-username",
            "u",
            "--registry-password-stdin",
            "--skip-preflight",
            *fake_kube.cli_args(),
        ],
        input="s3cr3t-pw\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "DEBUG" in done.stderr
    output = done.stdout + done.stderr
    assert "s3cr3t-pw" not in output
    assert base64.b64encode(b"u:s3cr3t-pw").decode() not in output
    secret = fake_kube.get("v1", "Secret", "nginx-mesh-registry-key", "nginx-mesh")
    assert secret is not None
    assert secret["data"][".dockerconfigjson"] not in output
