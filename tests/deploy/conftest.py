"""Fixtures for the deploy tests: the fake (or real, opt-in) cluster, and CLI helpers."""

from __future__ import annotations

from tests.fakekube.fixtures import fake_kube, kube

__all__ = ["fake_kube", "kube"]
