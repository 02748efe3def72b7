"""Fixtures for tests that need a Docker engine (a private dockerd per test session)."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.dockerd import Dockerd, DockerdUnavailable, start_dockerd


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd. If it cannot start, the tests using it fail in CI (``CI=true``), so
    CI cannot pass with every daemon test skipped, and skip elsewhere; both with its error."""
    try:
        daemon = start_dockerd()
    except DockerdUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true and dockerd cannot start: {exc}", pytrace=False)
        pytest.skip(str(exc))
    yield daemon
    daemon.stop()


@pytest.fixture
def docker_env(dockerd: Dockerd, tmp_path: Path) -> dict[str, str]:
    """Client isolation: ``DOCKER_HOST`` is the private daemon, ``DOCKER_CONFIG`` and ``HOME``
    are fresh empty directories of this test."""
    config, home = tmp_path / "docker-config", tmp_path / "home"
    config.mkdir()
    home.mkdir()
    return {"DOCKER_HOST": dockerd.host, "DOCKER_CONFIG": str(config), "HOME": str(home)}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the daemon's log to the report of a failed test that used it."""
    report = yield
    daemon = getattr(item, "funcargs", {}).get("dockerd")
    if report.failed and isinstance(daemon, Dockerd):
        report.sections.append(("dockerd log", daemon.log_tail()))
    return report
