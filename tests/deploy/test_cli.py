"""``python -m deploy`` as installed: the entry point maps errors to one line and an exit code."""

from __future__ import annotations

import os
import subprocess
import sys


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
