"""The admission policy that admits mesh Pods only with images under the private registry."""

from __future__ import annotations

import json
from typing import Any, Literal

from deploy.labels import INJECT_ENABLED, INJECT_LABEL, PART_OF, PART_OF_LABEL
from mirror.image.reference import RegistryServer

Obj = dict[str, Any]
Mode = Literal["warn", "deny"]

API_VERSION = "admissionregistration.k8s.io/v1"
POLICY_NAME = "nginx-mesh-registry-only"
# warn: the API server warns the client and records the failure in the audit log; deny refuses.
VALIDATION_ACTIONS: dict[str, list[str]] = {"warn": ["Warn", "Audit"], "deny": ["Deny"]}


def registry_prefix(server: RegistryServer) -> str:
    """What every admitted image starts with: ``host/`` or ``host/path/``, slash included."""
    return f"{server}/"


def _images_of(pod: str) -> str:
    """CEL: every container, init container and ephemeral container image of ``pod``."""
    return " + ".join(
        f"(has({pod}.spec.{field}) ? {pod}.spec.{field}.map(c, c.image) : [])"
        for field in ("containers", "initContainers", "ephemeralContainers")
    )


def policy_variables(server: RegistryServer, namespace: str) -> list[dict[str, str]]:
    """The policy's CEL variables, in order (each may use the ones before it).

    ``in_scope``: the mesh's namespace, or one labelled for injection as the chart's injector
    webhook selects it (``kube-system`` never). ``outside``: the Pod's images not under the
    registry, less those it already had before an update: an update (a label, an owner) of a
    Pod that runs a public image is not refused, a new image (an ephemeral container, a
    changed image) is.
    """
    prefix = json.dumps(registry_prefix(server))
    labels = "namespaceObject.metadata.labels"
    in_scope = (
        f"namespaceObject.metadata.name == {json.dumps(namespace)}"
        f' || (namespaceObject.metadata.name != "kube-system" && has({labels})'
        f" && {json.dumps(INJECT_LABEL)} in {labels}"
        f" && {labels}[{json.dumps(INJECT_LABEL)}] == {json.dumps(INJECT_ENABLED)})"
    )
    outside = (
        "variables.in_scope ? variables.images.filter(i,"
        f" !i.startsWith({prefix}) && !(i in variables.old_images)) : []"
    )
    return [
        {"name": "in_scope", "expression": in_scope},
        {"name": "images", "expression": _images_of("object")},
        {"name": "old_images", "expression": f"oldObject == null ? [] : {_images_of('oldObject')}"},
        {"name": "outside", "expression": outside},
    ]


def policy_validation(server: RegistryServer) -> dict[str, str]:
    """The one validation: no image outside the registry, the message naming the first one."""
    prefix = registry_prefix(server)
    return {
        "expression": "size(variables.outside) == 0",
        "messageExpression": (
            f"'image ' + variables.outside[0] + ' is not under {prefix}'"
            " + (size(variables.outside) > 1"
            " ? ' (and ' + string(size(variables.outside) - 1) + ' more)' : '')"
        ),
        "reason": "Forbidden",
    }


def admission_policy(server: RegistryServer, namespace: str, mode: Mode) -> list[Obj]:
    """The ValidatingAdmissionPolicy and its binding (``admissionregistration.k8s.io/v1``).

    They cover Pod creates, updates and ephemeral containers added, in ``namespace`` and in
    namespaces labelled for injection; ``mode`` warns (and audits) or refuses.
    """
    metadata = {"name": POLICY_NAME, "labels": {PART_OF_LABEL: PART_OF}}
    policy: Obj = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata,
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["pods", "pods/ephemeralcontainers"],
                    }
                ]
            },
            "variables": policy_variables(server, namespace),
            "validations": [policy_validation(server)],
        },
    }
    binding: Obj = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {**metadata, "labels": {PART_OF_LABEL: PART_OF}},
        "spec": {"policyName": POLICY_NAME, "validationActions": VALIDATION_ACTIONS[mode]},
    }
    return [policy, binding]


def is_policy(obj: Obj) -> bool:
    """Whether ``obj`` is the admission policy or its binding."""
    return bool(
        obj.get("apiVersion") == API_VERSION
        and (obj.get("metadata") or {}).get("name") == POLICY_NAME
        and str(obj.get("kind", "")).startswith("ValidatingAdmissionPolicy")
    )
