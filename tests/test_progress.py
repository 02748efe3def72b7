"""The live progress display in a terminal: one failure leaves every row readable (issue 24)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from mirror.cli.progress import LiveProgress
from mirror.image.reference import parse_reference
from mirror.report import ImageResult
from mirror.run import CopyJob

LONG = "registry.example.com/platform/service-mesh/nginx-mesh-controller:2.0.0"  # 70 characters
REASON = (
    "helm.nginx.com: GET /stable/index.yaml: ConnectError: [Errno -2] Name or service not known"
)
_CLEAR = re.compile(r"\r\x1b\[2K(?:\x1b\[1A\x1b\[2K)*")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def job(source: str, destination: str) -> CopyJob:
    return CopyJob(parse_reference(source), parse_reference(destination))


def run_display(width: int) -> tuple[list[str], list[str]]:
    """Three images (copied with mounted bytes, present, failed) shown in a ``width``-column
    terminal: the last screen's rows, and the lines printed below it."""
    out = io.StringIO()
    display = LiveProgress(Console(force_terminal=True, width=width, file=out), 3)
    copied = job("ghcr.io/acme/controller:2.0.0", LONG)
    present = job("docker.io/library/nats:2.9-alpine", "registry.example.com/nsm/nats:2.9-alpine")
    failed = job("helm.nginx.com/stable/nginx-service-mesh:2.0.0", "registry.example.com/nsm/nsm:2")
    results = []
    for one in (copied, present, failed):
        display.started(one)
    display.sized(copied, 76_000_000)
    display.placed(copied, 30_000_000, "mounted")
    display.advanced(copied, 46_000_000)
    for one, status, error in (
        (copied, "copied", None),
        (present, "present", None),
        (failed, "failed", f"{failed.source}: {(REASON + '; ') * 3}"[:300]),
    ):
        results.append(ImageResult(str(one.source), str(one.destination), status, error=error))
        display.finished(one, results[-1])
    display.close()
    display.list_failures(results)
    text = out.getvalue()
    frame, _, after = _CLEAR.split(text)[-1].partition("\x1b[?25h")
    rows = _ANSI.sub("", frame).splitlines()
    return rows, _ANSI.sub("", after).splitlines()


@pytest.mark.parametrize("width", [80, 160])
def test_a_failure_leaves_every_row_and_the_total_readable(width: int) -> None:
    rows, below = run_display(width)
    assert len(LONG) == 70
    assert all(len(row) <= width for row in rows), rows
    total, copied, present, failed = rows
    assert total.startswith("total (3 images)")
    assert "46.0/46.0 MB (30.0 MB mounted)" in total
    assert copied.startswith(LONG if width == 160 else LONG[:20])
    assert "46.0/46.0 MB (30.0 MB mounted)" in copied and " copied" in copied
    assert present.startswith("registry.example.com/nsm/nats") and " present" in present
    assert failed.startswith("registry.example.com/nsm/nsm:2")
    assert re.search(r" failed( |$)", failed) and "Errno" not in failed
    reason = f"helm.nginx.com/stable/nginx-service-mesh:2.0.0: {(REASON + '; ') * 3}"[:300]
    assert below == [f"failed: registry.example.com/nsm/nsm:2: {reason}"]
