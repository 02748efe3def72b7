"""Every label, annotation and selector by which deploy marks objects and finds them again."""

from __future__ import annotations

from typing import Any

# The registry pull Secret's name; its ``usage`` label repeats it, so every copy can be found.
SECRET_NAME = "nginx-mesh-registry-key"

USAGE_LABEL = "usage"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "nginx-service-mesh"
# nginx-meshctl remove deletes the CRDs carrying this label (the chart's crds/ do).
PART_OF_SELECTOR = f"{PART_OF_LABEL}={PART_OF}"
# On the registry Secret and on each copy propagate makes of it.
SECRET_LABELS = {USAGE_LABEL: SECRET_NAME, PART_OF_LABEL: PART_OF}
SECRET_SELECTOR = f"{USAGE_LABEL}={SECRET_NAME}"

# Helm's ownership metadata: an object carrying these belongs to the release they name.
HELM_RELEASE_NAME = "meta.helm.sh/release-name"
HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"

# Set on a namespace deploy created: remove deletes only such a namespace.
CREATED_ANNOTATION = "meshlift/created-by"
CREATED_BY = "deploy-apply"
# On a service account whose imagePullSecrets entry propagate added.
PULL_SECRET_LABEL = "meshlift/added-pull-secret"
# The record of a deploy made before deploy became a Helm release.
LEGACY_RECORD = "meshlift-deploy"

# The mesh's own: a namespace whose pods get the sidecar.
INJECT_LABEL = "injector.nsm.nginx.com/auto-inject"
INJECT_ENABLED = "enabled"
INJECT_SELECTOR = f"{INJECT_LABEL}={INJECT_ENABLED}"
SIDECAR_CONTAINER = "nginx-mesh-sidecar"
# The platform's: on the Secrets it makes for a service account (token, OpenShift's dockercfg).
ACCOUNT_SECRET_ANNOTATION = "kubernetes.io/service-account.name"


def created_by_us(obj: dict[str, Any]) -> bool:
    """Whether ``deploy apply`` created ``obj`` (it carries our annotation)."""
    annotations = obj["metadata"].get("annotations") or {}
    return bool(annotations.get(CREATED_ANNOTATION) == CREATED_BY)


def owned_by_release(obj: dict[str, Any], release: str, namespace: str) -> bool:
    """Whether ``obj`` carries Helm's ownership metadata for ``release`` in ``namespace``."""
    annotations = obj["metadata"].get("annotations") or {}
    return (
        annotations.get(HELM_RELEASE_NAME) == release
        and annotations.get(HELM_RELEASE_NAMESPACE) == namespace
    )
