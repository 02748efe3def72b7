"""The post-rendered plan: what the release stores, hooks with their annotations, all valid."""

from __future__ import annotations

import kubernetes_validate
import pytest

from deploy.chart.manifests import parse_documents
from deploy.chart.render import Rendered
from deploy.chart.settings import Settings
from deploy.chart.values import ValueFlags
from deploy.errors import InputError
from deploy.postrender.plan import Plan, build_plan, load_rendered
from deploy.postrender.rewrite import image_uses, pod_specs
from mirror.image.lock import load_lock
from mirror.net.credentials import Credentials
from tests.chartrepo import official_chart
from tests.deploy.deploycli import MINI_MESH, PLACEHOLDER, kubectl_secret, strings_in

R = "reg.example:5000"


NO_VALUES = ValueFlags()


def plan_of(settings: Settings, chart: str = MINI_MESH, values: ValueFlags = NO_VALUES) -> Plan:
    """The plan of ``chart`` rendered offline, as ``deploy render`` makes it."""
    lock = load_lock(None)
    rendered = load_rendered(settings, lock, chart=chart, values=values)
    return build_plan(rendered, lock.entries, settings)


@pytest.mark.parametrize("environment", ["kubernetes", "openshift"])
def test_whole_plan_validates(environment: str) -> None:
    plan = plan_of(
        Settings.parse(
            R, Credentials("u", "p"), disable_public_images=True, environment=environment
        )
    )
    for obj in (*plan.crds, *plan.objects):
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_hooks_stay_in_the_plan_with_their_annotations_apart_from_the_resources() -> None:
    plan = plan_of(Settings.parse(R, Credentials("u", "s3cr3t-pw")))
    hooks = {o["metadata"]["name"]: o["metadata"]["annotations"] for o in plan.hooks}
    assert sorted(hooks) == [
        "check-cluster",
        "nginx-mesh-registry-key",
        "post-delete",
        "remove-spiffeids",
        "turn-proxies-transparent",
    ]
    assert hooks["check-cluster"] == {
        "helm.sh/hook": "pre-install",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
        "helm.sh/hook-weight": "0",
    }
    assert hooks["post-delete"]["helm.sh/hook-weight"] == "-5"
    assert not any("helm.sh/hook" in o["metadata"].get("annotations", {}) for o in plan.resources)
    assert len(plan.resources) + len(plan.hooks) == len(plan.objects)


def test_hook_jobs_pull_from_the_registry_with_the_pull_secret() -> None:
    plan = plan_of(Settings.parse(R, Credentials("u", "pw"), disable_public_images=True))
    jobs = [o for o in plan.hooks if o["kind"] == "Job"]
    assert len(jobs) == 3
    for job in jobs:
        assert [u.image for u in image_uses(job)] == [f"{R}/kubectl"]
        (spec,) = pod_specs(job)
        assert spec["imagePullSecrets"] == [{"name": "nginx-mesh-registry-key"}]


def test_the_hook_secret_is_ours_with_the_charts_hook_annotations() -> None:
    plan = plan_of(Settings.parse(R, Credentials("u", "pw")))
    (hook,) = [o for o in plan.hooks if o["kind"] == "Secret"]
    (secret,) = [o for o in plan.resources if o["kind"] == "Secret"]
    assert hook["data"] == secret["data"]
    assert hook["metadata"]["labels"]["usage"] == "nginx-mesh-registry-key"
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"


def test_hooks_in_rendered_manifests_keep_their_annotations() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n"
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n"
        '  annotations: {"helm.sh/hook": "pre-install,pre-upgrade"}\n'
        "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
        '      containers: [{name: migrate, image: "bitnami/kubectl:latest"}]\n'
    )
    rendered = Rendered([], parse_documents(text, "test"), "rendered YAML")
    settings = Settings.parse(R, disable_public_images=True)
    plan = build_plan(rendered, load_lock(None).entries, settings)
    assert [o["metadata"]["name"] for o in plan.resources] == ["settings"]
    (job,) = plan.hooks
    assert job["metadata"]["annotations"] == {"helm.sh/hook": "pre-install,pre-upgrade"}
    assert [u.image for u in image_uses(job)] == [f"{R}/kubectl:latest"]


def test_the_post_renderer_leaves_namespaces_to_helm() -> None:
    docs = parse_documents(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: b}\n",
        "test",
    )
    settings = Settings.parse(R, namespace="mesh")
    plan = build_plan(Rendered([], docs, "rendered YAML"), load_lock(None).entries, settings)
    assert [o["metadata"] for o in plan.objects] == [{"name": "a"}, {"name": "b"}]


def test_plan_values_are_the_values_the_chart_was_rendered_with() -> None:
    settings = Settings.parse(
        R, Credentials("u", "pw"), disable_public_images=True, image_tag="2.0.1"
    )
    plan = plan_of(settings, values=ValueFlags(set=("mtls.mode=strict",)))
    assert plan.values == {
        "registry": {
            "server": R,
            "imageTag": "2.0.1",
            "disablePublicImages": True,
            "username": "u",
            "password": "pw",
        },
        "environment": "kubernetes",
        "mtls": {"mode": "strict"},
    }
    key = plan_of(Settings.parse(R, Credentials("_json_key", '{"type": "service_account"}')))
    assert key.values["registry"]["key"] == '{"type": "service_account"}'
    assert "username" not in key.values["registry"]


def test_redacted_plan_has_no_secret_data() -> None:
    plan = plan_of(Settings.parse(R, Credentials("u", "s3cr3t-pw")))
    shown = plan.redacted()
    secrets = [o for o in shown if o["kind"] == "Secret"]
    assert len(secrets) == 2  # the release's and the post-delete hook's
    assert all(s["data"] == {".dockerconfigjson": "<redacted>"} for s in secrets)
    assert not any("s3cr3t" in text for text in strings_in(shown))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"namespace": "Bad_NS"}, "invalid --namespace 'Bad_NS'"),
        ({"image_tag": "no spaces"}, "invalid --image-tag 'no spaces'"),
        ({"environment": "mars"}, "invalid --environment 'mars'"),
    ],
)
def test_bad_settings_are_input_errors(settings: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Settings.parse(R, **settings)  # type: ignore[arg-type]


def test_chart_images_are_every_image_the_plan_pulls() -> None:
    plan = plan_of(Settings.parse(R, disable_public_images=True))
    assert [str(ref) for ref in plan.pull_images()] == [
        f"{R}/curl:latest",
        f"{R}/kubectl:latest",
        f"{R}/nats:2.9-alpine",
        f"{R}/nginx-mesh-controller:2.0.0",
        f"{R}/nginx-mesh-init:2.0.0",
        f"{R}/nginx-mesh-metrics:2.0.0",
        f"{R}/nginx-mesh-sidecar:2.0.0",
        f"{R}/spire-agent:1.5.6",
    ]


def test_the_official_charts_registry_secret_is_kubectls_labelled_and_no_placeholder_anywhere() -> (
    None
):
    settings = Settings.parse(R, Credentials("u", "pw"), environment="openshift")
    plan = plan_of(settings, str(official_chart()))
    (secret,) = [
        o
        for o in plan.resources
        if o["kind"] == "Secret" and o["metadata"]["name"] == "nginx-mesh-registry-key"
    ]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["data"] == kubectl_secret(R, "u", "pw")["data"]
    assert secret["metadata"]["labels"]["usage"] == "nginx-mesh-registry-key"
    found = [
        o["metadata"]["name"]
        for o in (*plan.crds, *plan.objects)
        if any(PLACEHOLDER in text for text in strings_in(o))
    ]
    assert found == []
