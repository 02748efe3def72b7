"""deploy against what a real API server does, as the fake now does it too.

Field ownership, terminating namespaces, objects controllers add, failing rollouts, expired
watches and lagging discovery.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from click.testing import Result

from deploy.cluster.client import Cluster
from deploy.cluster.propagate import Propagated, watch_and_propagate
from tests.deploy.deploycli import R, ok, one_line_error, run_deploy
from tests.fakekube.fixtures import KubeUnderTest, when_watched

DATA = Path(__file__).parent / "data"
WEB, DB, BROKEN = DATA / "web.yaml", DATA / "db.yaml", DATA / "broken.yaml"
WIDGETS = DATA / "widgets.yaml"
INJECT = {"injector.nsm.nginx.com/auto-inject": "enabled"}
PRIVATE = ("--disable-public-images",)  # every image from R, so a failed pull names R


def apply_web(kube: KubeUnderTest, namespace: str, *extra: str, manifest: Path = WEB) -> Result:
    """``deploy apply --manifests`` of ``manifest`` into ``namespace``, waiting for rollouts."""
    return run_deploy(
        "apply",
        "--registry-server",
        R,
        "--namespace",
        namespace,
        "--skip-preflight",
        "--manifests",
        str(manifest),
        "--registry-username",
        "u",
        "--timeout",
        "2m",
        *kube.cli_args(),
        *extra,
        env={"MESHLIFT_REGISTRY_PASSWORD": "pw"},
    )


def test_reapply_keeps_what_another_manager_added_and_changes_nothing(
    kube: KubeUnderTest,
) -> None:
    namespace = kube.ns("web")
    ok(apply_web(kube, namespace))
    # The platform adds its own pull secret to the ServiceAccount (as OpenShift does), and
    # someone sets an environment variable on the container (as `kubectl set env` does).
    accounts = kube.client.resources.get(api_version="v1", kind="ServiceAccount")
    account = accounts.get(name="web", namespace=namespace).to_dict()
    account["imagePullSecrets"].append({"name": "web-dockercfg-x7k2p"})
    accounts.replace(body=account, field_manager="openshift-controller-manager")
    deployments = kube.client.resources.get(api_version="apps/v1", kind="Deployment")
    web = deployments.get(name="web", namespace=namespace).to_dict()
    web["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "DEBUG", "value": "1"})
    deployments.replace(body=web, field_manager="kubectl-set")

    before = kube.get("apps/v1", "Deployment", "web", namespace)
    assert before is not None
    again = ok(apply_web(kube, namespace))
    assert "upgraded: Helm release nginx-service-mesh revision 2" in again.stdout
    account = kube.get("v1", "ServiceAccount", "web", namespace)
    assert account is not None
    assert account["imagePullSecrets"] == [
        {"name": "nginx-mesh-registry-key"},
        {"name": "web-dockercfg-x7k2p"},
    ]
    web = kube.get("apps/v1", "Deployment", "web", namespace)
    assert web is not None
    assert web["metadata"]["generation"] == before["metadata"]["generation"]  # spec unchanged
    assert web["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "MODE", "value": "mesh"},
        {"name": "DEBUG", "value": "1"},
    ]


def test_a_field_another_manager_owns_on_an_object_we_did_not_create_is_reported(
    kube: KubeUnderTest,
) -> None:
    namespace = kube.create_namespace("web")
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"mode": "user"},
        }
    )
    manifest = kube.workdir / "settings.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: mesh}\n"
    )
    result = apply_web(kube, namespace, manifest=manifest)
    assert one_line_error(result, 1, only=False) == (
        "Error: 1 object(s) exist and do not belong to Helm release nginx-service-mesh:"
        f" ConfigMap {namespace}/settings; nothing was changed. Pass --take-ownership to let"
        " the release adopt them (as helm install --take-ownership)"
    )
    settings = kube.get("v1", "ConfigMap", "settings", namespace)
    assert settings is not None and settings["data"] == {"mode": "user"}


def test_apply_right_after_remove_waits_for_the_old_namespace_and_owns_the_new_one(
    kube: KubeUnderTest,
) -> None:
    if kube.server is not None:
        kube.server.store.namespace_delay = 1.0  # a real namespace takes a while to go
    namespace = kube.ns("web")
    ok(apply_web(kube, namespace))
    old = kube.get("v1", "Namespace", namespace)
    assert old is not None
    removed = ok(run_deploy("remove", "--namespace", namespace, *kube.cli_args()))
    assert f"deleted    Namespace {namespace}" in removed.stdout
    if kube.is_fake:  # on a real cluster it may be gone already
        terminating = kube.get("v1", "Namespace", namespace)
        assert terminating is not None and terminating["status"]["phase"] == "Terminating"
        twice = ok(run_deploy("remove", "--namespace", namespace, *kube.cli_args()))
        assert f"kept       Namespace {namespace}: being deleted already" in twice.stdout

    again = ok(apply_web(kube, namespace))
    assert "installed: Helm release nginx-service-mesh revision 1" in again.stdout
    if kube.is_fake:
        assert f"waiting for Namespace {namespace} to finish terminating" in again.stderr
    fresh = kube.get("v1", "Namespace", namespace)
    assert fresh is not None and fresh["metadata"]["uid"] != old["metadata"]["uid"]
    assert fresh["metadata"]["annotations"]["meshlift/created-by"] == "deploy-apply"
    removed = ok(run_deploy("remove", "--namespace", namespace, *kube.cli_args()))
    assert f"deleted    Namespace {namespace}" in removed.stdout


def test_remove_counts_what_controllers_made_for_our_objects_as_ours(
    fake_kube: KubeUnderTest,
) -> None:
    assert fake_kube.server is not None
    fake_kube.server.store.controllers.update({"openshift", "statefulset-pvcs", "events"})
    ok(apply_web(fake_kube, "web", "--manifests", str(DB)))
    # What a real OpenShift cluster adds: the platform's defaults, a pull Secret per
    # ServiceAccount, claims for the StatefulSet, events.
    secrets = [s["metadata"]["name"] for s in fake_kube.list("v1", "Secret", "web")]
    assert any(name.startswith("web-dockercfg-") for name in secrets)
    assert fake_kube.get("v1", "ServiceAccount", "builder", "web") is not None
    assert fake_kube.get("v1", "PersistentVolumeClaim", "data-db-1", "web") is not None
    assert fake_kube.list("v1", "Event", "web")

    removed = ok(run_deploy("remove", "--namespace", "web", *fake_kube.cli_args()))
    assert "deleted    Namespace web" in removed.stdout, removed.stdout
    assert fake_kube.get("v1", "Namespace", "web") is None


def test_wait_fails_at_once_naming_the_pod_whose_image_cannot_be_pulled(
    kube: KubeUnderTest,
) -> None:
    image = f"{R}/nats:2.9-alpine"
    if kube.server is not None:
        kube.server.store.pull_errors[image] = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not'
            " found"
        )
    namespace = kube.ns("broken")
    result = apply_web(kube, namespace, "--timeout", "10m", *PRIVATE, manifest=BROKEN)
    error = one_line_error(result, 1, only=False)
    assert error.startswith(
        f"Error: Deployment {namespace}/broken did not roll out: Pod {namespace}/broken-"
    )
    assert f"image {image} could not be pulled: " in error
    assert error.endswith("; is it mirrored? is the Secret in this namespace?")
    assert ("ErrImagePull: " in error) or ("ImagePullBackOff: " in error)


def test_a_daemonset_that_stays_unavailable_names_its_pod(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    image = f"{R}/ubuntu:22.04"
    fake_kube.server.store.pull_errors[image] = f'Back-off pulling image "{image}"'
    result = apply_web(fake_kube, "agents", "--timeout", "10m", *PRIVATE, manifest=BROKEN)
    error = one_line_error(result, 1, only=False)
    assert error.startswith("Error: DaemonSet agents/agent did not roll out: Pod agents/agent-")
    assert error.endswith(
        f': ImagePullBackOff: image {image} could not be pulled: Back-off pulling image "{image}";'
        " is it mirrored? is the Secret in this namespace?"
    )


def test_a_deployment_past_its_progress_deadline_fails_the_wait(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    fake_kube.server.store.stalled.add("broken")
    result = apply_web(fake_kube, "web", "--timeout", "10m", manifest=BROKEN)
    error = one_line_error(result, 1, only=False)
    assert "Deployment/web/broken not ready" in error and "Progress deadline exceeded" in error


def test_propagate_watch_lists_again_after_410_gone_and_goes_on(fake_kube: KubeUnderTest) -> None:
    server = fake_kube.server
    assert server is not None
    ok(apply_web(fake_kube, "nginx-mesh", "--no-wait"))
    stop = threading.Event()
    results: list[Propagated] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with Cluster.connect(str(fake_kube.kubeconfig)) as cluster:
                watch_and_propagate(cluster, "nginx-mesh", [], True, results.append, stop, 600)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    watcher = threading.Thread(target=run)
    watcher.start()
    try:
        seen: list[int] = []

        def expire() -> None:
            seen.append(len(server.requests))
            server.store.compact()

        when_watched(server, expire).join()
        labelled = fake_kube.create_namespace("labelled-later", INJECT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not fake_kube.get(
            "v1", "Secret", "nginx-mesh-registry-key", labelled
        ):
            time.sleep(0.1)
    finally:
        stop.set()
        fake_kube.create_namespace("wake-up")  # the watch sees stop at its next event
        watcher.join(timeout=20)
    assert not errors
    assert labelled in {r.namespace for r in results if not r.error}
    lists = [
        r
        for r in server.requests[seen[0] :]
        if r.path == "/api/v1/namespaces" and "watch" not in r.query
    ]
    assert lists, "no new list after 410 Gone"


def test_the_rollout_wait_goes_on_after_410_gone(fake_kube: KubeUnderTest) -> None:
    server = fake_kube.server
    assert server is not None
    server.store.set_workloads_ready(False)

    def expire_then_roll_out() -> None:
        server.store.compact()
        server.store.set_workloads_ready(True)

    controller = when_watched(server, expire_then_roll_out)
    result = ok(apply_web(fake_kube, "web", "--manifests", str(DB)))
    controller.join()
    assert "rolled out StatefulSet web/db: 2/2 ready" in result.stderr


def test_custom_resources_wait_for_discovery_after_their_crd_is_established(
    kube: KubeUnderTest,
) -> None:
    if kube.server is not None:
        kube.server.store.discovery_delay = 1.5  # Established, but not yet in discovery
    namespace = kube.ns("widgets")
    ok(apply_web(kube, namespace, manifest=WIDGETS))
    widget = kube.get("meshlift-test.example.com/v1", "Widget", "first", namespace)
    assert widget is not None and widget["spec"] == {"size": 3}
