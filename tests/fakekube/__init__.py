"""A stateful fake Kubernetes API server for tests; see README.md."""

from tests.fakekube.server import FakeKubeServer

__all__ = ["FakeKubeServer"]
