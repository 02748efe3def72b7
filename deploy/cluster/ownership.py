"""Which objects of a release exist without belonging to it: refused before anything changes.

Helm refuses to touch an object its release does not own; deploy checks the same before it
sends anything, so a refusal changes nothing, and names every such object. Adoption
(``--take-ownership``) is Helm's own: its install and upgrade take such objects over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deploy.chart.manifests import describe
from deploy.cluster.client import Cluster
from deploy.errors import ClusterError
from deploy.labels import owned_by_release

Obj = dict[str, Any]


class NotOwned(ClusterError):
    """Objects of the chart exist and belong to someone else: nothing was changed."""


def _existing(cluster: Cluster, obj: Obj, namespace: str) -> Obj | None:
    if not cluster.serves(obj["apiVersion"], obj["kind"]):
        return None  # a kind the chart's CRDs bring: nothing of it can exist yet
    resource = cluster.resource(obj["apiVersion"], obj["kind"])
    where = (obj["metadata"].get("namespace") or namespace) if resource.namespaced else None
    return cluster.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], where)


def foreign_objects(
    cluster: Cluster, objects: Iterable[Obj], release: str, namespace: str
) -> list[Obj]:
    """The objects of ``objects`` that exist in the cluster but not as ``release``'s."""
    found = (_existing(cluster, obj, namespace) for obj in objects)
    return [o for o in found if o is not None and not owned_by_release(o, release, namespace)]


def refusal(objects: list[Obj], release: str) -> NotOwned:
    """The error naming every object the release may not take."""
    listed = "; ".join(describe(o) for o in objects)
    return NotOwned(
        f"{len(objects)} object(s) exist and do not belong to Helm release {release}: {listed};"
        " nothing was changed. Pass --take-ownership to let the release adopt them"
        " (as helm install --take-ownership)"
    )
