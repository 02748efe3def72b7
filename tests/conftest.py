"""Shared fixtures. Keep fixtures thin: the logic lives in tests/registries.py & co."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.faultproxy import ProxyFactory
from tests.registries import Registry, RegistryFactory, registries_in, start_registry
from tests.registries import unique_repo as unique_repo_name

pytest_plugins = ["tests.docker_fixtures"]

# --- the opt-in real-cluster suite ------------------------------------------------------------


def _real_cluster() -> str | None:
    from tests.fakekube.fixtures import E2E_ENV

    return os.environ.get(E2E_ENV) or None


def pytest_report_header(config: pytest.Config) -> str:
    """Say whether the real-cluster runs of the deploy scenarios are in this session."""
    where = _real_cluster()
    return (
        f"real cluster: {where}" if where else "real cluster: none (MESHLIFT_E2E_KUBECONFIG unset)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a real cluster its runs are deselected (not applicable here), not skipped."""
    if _real_cluster():
        return
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    if e2e:
        config.hook.pytest_deselected(items=e2e)
        items[:] = [item for item in items if not item.get_closest_marker("e2e")]


# --- registries -------------------------------------------------------------------------------


def _session_registry(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(kind, tmp_path_factory.mktemp(f"registry-{kind}"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def anon_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Shared anonymous plain-HTTP registry (use unique repository names)."""
    yield from _session_registry("anon", tmp_path_factory)


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Shared htpasswd registry over plain HTTP (user/password on the Registry)."""
    yield from _session_registry("basic", tmp_path_factory)


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Shared anonymous HTTPS registry; trust it with ``ca_file``."""
    yield from _session_registry("tls", tmp_path_factory)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Shared token-auth registry; its TokenIssuer is ``token_registry.issuer``."""
    yield from _session_registry("token", tmp_path_factory)


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[RegistryFactory]:
    """``make_registry(kind, **opts)`` starts a fresh registry, stopped at test end."""
    factory = RegistryFactory(tmp_path / "registries")
    yield factory
    factory.stop_all()


@pytest.fixture
def proxies() -> Iterator[ProxyFactory]:
    """``proxies(url)`` starts a fault proxy in front of ``url``, stopped at test end."""
    factory = ProxyFactory()
    yield factory
    factory.stop_all()


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``unique_repo(name="repo")`` → ``<test-name>/<name>-<8 hex>``, unique across the session."""
    return lambda name="repo": unique_repo_name(request.node.name, name)


# --- reporting --------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of the registries a failed test used to its report."""
    report = yield
    if report.failed:
        for reg in registries_in(getattr(item, "funcargs", {}).values()):
            report.sections.append((f"registry {reg.kind} {reg.host}", reg.log_tail()))
    return report
