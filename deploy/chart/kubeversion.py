"""The chart's ``kubeVersion`` constraint, checked as Helm checks it, before anything is sent.

Helm reads the constraint with Masterminds/semver; node-semver reads the same ranges once a
partial version with a pre-release (``1.22-0``) is written out (``1.22.0-0``) and commas,
Masterminds' "and", are spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import nodesemver

from deploy.errors import InputError

_PARTIAL = re.compile(r"(?<![\w.])v?(\d+)(?:\.(\d+))?-")


def _written_out(constraint: str) -> str:
    def full(match: re.Match[str]) -> str:
        return f"{match.group(1)}.{match.group(2) or 0}.0-"

    return _PARTIAL.sub(full, constraint.replace(",", " "))


class Incompatible(InputError):
    """The chart's kubeVersion excludes the cluster's (or the given) Kubernetes version."""


def check_kube_version(metadata: Mapping[str, Any], version: str) -> None:
    """An Incompatible error, worded as Helm's, when ``version`` is outside the constraint."""
    constraint = str(metadata.get("kubeVersion") or "")
    if not constraint:
        return
    plain = version.lstrip("v")
    # Masterminds considers pre-releases (v1.30.5-gke.1) only for a range that names one.
    prerelease = "-" in constraint
    written = _written_out(constraint)
    if not nodesemver.satisfies(plain, written, loose=True, include_prerelease=prerelease):
        raise Incompatible(
            f"chart {metadata.get('name')} {metadata.get('version')} requires kubeVersion:"
            f" {constraint} which is incompatible with Kubernetes {version}"
        )
