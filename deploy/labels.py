"""Every label, annotation and selector by which deploy marks its objects and finds them again."""

from __future__ import annotations

from typing import Any

# The registry pull Secret's name; its ``usage`` label repeats it, so every copy can be found.
SECRET_NAME = "nginx-mesh-registry-key"

USAGE_LABEL = "usage"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY = "meshlift"
PART_OF = "nginx-service-mesh"
# On every object apply sends; remove and status find the mesh by them.
MESH_LABELS = {PART_OF_LABEL: PART_OF, MANAGED_BY_LABEL: MANAGED_BY}
MESH_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{PART_OF_LABEL}={PART_OF}"
# On the registry Secret and on each copy propagate makes of it.
SECRET_LABELS = {USAGE_LABEL: SECRET_NAME, **MESH_LABELS}
SECRET_SELECTOR = f"{USAGE_LABEL}={SECRET_NAME}"

# Set on every object apply created: apply forces only on these, and remove deletes only
# such a namespace.
CREATED_ANNOTATION = "meshlift/created-by"
CREATED_BY = "deploy-apply"
# On a service account whose imagePullSecrets entry propagate added.
PULL_SECRET_LABEL = "meshlift/added-pull-secret"

# The mesh's own: a namespace whose pods get the sidecar.
INJECT_LABEL = "injector.nsm.nginx.com/auto-inject"
INJECT_ENABLED = "enabled"
INJECT_SELECTOR = f"{INJECT_LABEL}={INJECT_ENABLED}"
# The platform's: on the Secrets it makes for a service account (token, OpenShift's dockercfg).
ACCOUNT_SECRET_ANNOTATION = "kubernetes.io/service-account.name"


def created_by_us(obj: dict[str, Any]) -> bool:
    """Whether ``deploy apply`` created ``obj`` (it carries our annotation)."""
    annotations = obj["metadata"].get("annotations") or {}
    return bool(annotations.get(CREATED_ANNOTATION) == CREATED_BY)
