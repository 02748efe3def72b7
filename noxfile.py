"""Development sessions: tests, lint, types, bench, demo."""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "types", "tests"]
PACKAGES = ["mirror", "deploy"]


@nox.session
def tests(session: nox.Session) -> None:
    """The import contracts, then the whole suite against real registries, skopeo, dockerd and
    the fake API server."""
    session.install("-e", ".[test]", "import-linter")
    session.run("lint-imports")
    session.run("pytest", "-n", "2", "--dist", "loadfile", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check, and the import contracts of pyproject.toml (import-linter)."""
    session.install("-e", ".", "ruff", "import-linter")
    session.run("ruff", "check", *PACKAGES, "tests", "benchmarks", "scripts", "noxfile.py")
    session.run("ruff", "format", "--check", *PACKAGES, "tests", "benchmarks", "scripts")
    session.run("lint-imports")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on both packages."""
    session.install("-e", ".[dev]")
    session.run("mypy", *PACKAGES)


@nox.session
def bench(session: nox.Session) -> None:
    """W1-W8, meshlift against skopeo on loopback registries (table, results.json)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Throwaway registries, a mirror sync of the demo image set, and deploy render."""
    session.install("-e", ".[test]")
    session.run("python", "scripts/demo.py", *session.posargs)
