"""The admission policy's CEL, evaluated by Google's CEL runtime against allowed and refused Pods.

``cel-expr-python`` (the C++ CEL runtime, as cel-go in the API server a full, type-checked CEL)
was picked over ``common-expression-language`` and ``cel-python``: all three gave the right
verdict on every case here; it evaluates one case in about 22 us against 150 us and 2 ms.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from cel_expr_python import cel

from deploy.postrender.policy import POLICY_NAME, admission_policy
from mirror.image.reference import parse_registry_server
from tests.deploy.deploycli import ok, one_line_error, run_deploy

Obj = dict[str, Any]
R = "127.0.0.1:5000"
PREFIXED = "reg.example:5000/mesh"
MESH = "nginx-mesh"
INJECTED = {"injector.nsm.nginx.com/auto-inject": "enabled"}
_ENV = cel.NewEnv(
    variables={
        name: cel.Type.DYN for name in ("object", "oldObject", "namespaceObject", "variables")
    }
)


def pod(
    namespace: str,
    labels: dict[str, str] | None,
    containers: list[str],
    init: list[str] | None = None,
    ephemeral: list[str] | None = None,
) -> tuple[Obj, Obj]:
    """A Pod with these images, and its Namespace with ``labels``."""
    spec: Obj = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": im} for i, im in enumerate(init)]
    if ephemeral:
        spec["ephemeralContainers"] = [
            {"name": f"e{i}", "image": im} for i, im in enumerate(ephemeral)
        ]
    meta = {"name": "p", "namespace": namespace}
    ns_meta: Obj = {"name": namespace}
    if labels is not None:
        ns_meta["labels"] = {"kubernetes.io/metadata.name": namespace, **labels}
    return (
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": ns_meta},
    )


def admit(policy: Obj, obj: Obj, namespace: Obj, old: Obj | None = None) -> str | None:
    """What the API server does with ``obj`` (an update of ``old``, else a create): None to
    admit, else the policy's message."""
    spec = policy["spec"]
    variables: dict[str, Any] = {}
    data = {"object": obj, "oldObject": old, "namespaceObject": namespace, "variables": variables}
    for variable in spec["variables"]:
        value = _ENV.compile(variable["expression"]).eval(data=data).plain_value()
        variables[variable["name"]] = value
    (validation,) = spec["validations"]
    if _ENV.compile(validation["expression"]).eval(data=data).plain_value() is True:
        return None
    return str(_ENV.compile(validation["messageExpression"]).eval(data=data).plain_value())


def policy_for(server: str) -> Obj:
    return admission_policy(parse_registry_server(server), MESH, "deny")[0]


ALLOWED = {
    "mesh namespace, images under R": pod(MESH, {}, [f"{R}/nginx-mesh-controller:2.0.0"]),
    "injected namespace, every kind of container under R": pod(
        "shop",
        INJECTED,
        [f"{R}/web:1", f"{R}/nginx-mesh-sidecar:2.0.0"],
        [f"{R}/nginx-mesh-init:2.0.0"],
        [f"{R}/debug@sha256:{'a' * 64}"],
    ),
    "namespace not in the mesh": pod("other", {}, ["nats:2.9-alpine"]),
    "namespace without labels": pod("other", None, ["nats:2.9-alpine"]),
    "kube-system, even labelled for injection": pod("kube-system", INJECTED, ["coredns:1"]),
    "injection disabled": pod(
        "other", {"injector.nsm.nginx.com/auto-inject": "disabled"}, ["nats:2.9-alpine"]
    ),
}
REFUSED = {
    "public container in the mesh namespace": (
        pod(MESH, {}, ["nats:2.9-alpine"]),
        f"image nats:2.9-alpine is not under {R}/",
    ),
    "public init container": (
        pod("shop", INJECTED, [f"{R}/web:1"], ["curlimages/curl:latest"]),
        f"image curlimages/curl:latest is not under {R}/",
    ),
    "public ephemeral container": (
        pod("shop", INJECTED, [f"{R}/web:1"], [], ["busybox"]),
        f"image busybox is not under {R}/",
    ),
    "R as a prefix of another host": (
        pod("shop", INJECTED, [f"{R}.evil.example/x:1"]),
        f"image {R}.evil.example/x:1 is not under {R}/",
    ),
    "R followed by more characters": (
        pod("shop", INJECTED, [f"{R}0/y:1"]),
        f"image {R}0/y:1 is not under {R}/",
    ),
    "bare R": (pod("shop", INJECTED, [R]), f"image {R} is not under {R}/"),
    "R's public twin": (
        pod("shop", INJECTED, [f"docker.io/{R}/web:1"]),
        f"image docker.io/{R}/web:1 is not under {R}/",
    ),
    "several": (
        pod(MESH, {}, ["a:1", f"{R}/ok:1"], ["b:1"], ["c:1"]),
        f"image a:1 is not under {R}/ (and 2 more)",
    ),
}


@pytest.mark.parametrize("case", ALLOWED)
def test_the_policy_admits(case: str) -> None:
    assert admit(policy_for(R), *ALLOWED[case]) is None


@pytest.mark.parametrize("case", REFUSED)
def test_the_policy_refuses_with_a_message_naming_the_image(case: str) -> None:
    (obj, namespace), message = REFUSED[case]
    assert admit(policy_for(R), obj, namespace) == message


def test_an_update_is_refused_only_for_an_image_the_pod_did_not_have() -> None:
    policy = policy_for(R)
    running, namespace = pod("shop", INJECTED, ["nats:2.9-alpine"])
    relabelled = {**running, "metadata": {**running["metadata"], "labels": {"a": "b"}}}
    assert admit(policy, relabelled, namespace, old=running) is None
    debugged, _ = pod("shop", INJECTED, ["nats:2.9-alpine"], [], ["busybox"])
    assert admit(policy, debugged, namespace, old=running) == f"image busybox is not under {R}/"
    moved, _ = pod("shop", INJECTED, ["nats:2.10-alpine"])
    assert admit(policy, moved, namespace, old=running) == (
        f"image nats:2.10-alpine is not under {R}/"
    )


@pytest.mark.parametrize(
    ("image", "admitted"),
    [
        (f"{PREFIXED}/nats:2.9-alpine", True),
        (f"{PREFIXED}/sub/nats:2.9-alpine", True),
        (f"{PREFIXED}x/nats:2.9-alpine", False),
        (PREFIXED, False),
        ("reg.example:5000/other/nats:2.9-alpine", False),
        ("reg.example:5000/nats:2.9-alpine", False),
    ],
)
def test_a_registry_with_a_path_admits_only_images_under_that_path(
    image: str, admitted: bool
) -> None:
    verdict = admit(policy_for(PREFIXED), *pod(MESH, {}, [image]))
    assert (verdict is None) == admitted, verdict


@pytest.mark.parametrize(("mode", "actions"), [("warn", ["Warn", "Audit"]), ("deny", ["Deny"])])
def test_mode_sets_the_binding_actions_and_both_objects_are_valid_for_1_30(
    mode: str, actions: list[str]
) -> None:
    policy, binding = admission_policy(parse_registry_server(R), MESH, mode)  # type: ignore[arg-type]
    assert binding["spec"] == {"policyName": POLICY_NAME, "validationActions": actions}
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == POLICY_NAME
    for obj in (policy, binding):
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "nginx-service-mesh"
        kubernetes_validate.validate(obj, "1.30", strict=True)
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert rule["resources"] == ["pods", "pods/ephemeralcontainers"]


def test_admission_policy_prints_both_objects_as_sent() -> None:
    result = ok(run_deploy("admission-policy", "--registry-server", PREFIXED, "--mode", "deny"))
    printed = list(yaml.safe_load_all(result.stdout))
    assert printed == admission_policy(parse_registry_server(PREFIXED), MESH, "deny")
    assert admit(printed[0], *pod(MESH, {}, [f"{PREFIXED}x/nats:1"])) is not None


def test_admission_policy_refuses_a_bad_registry_in_one_line() -> None:
    line = one_line_error(run_deploy("admission-policy", "--registry-server", "R/Upper"), 2)
    assert "invalid registry server 'R/Upper': must be lower case" in line
