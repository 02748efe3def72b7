"""deploy apply against a cluster: flags, the Secret, re-apply, dry run, waiting, kubeconfig."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest

from deploy.postrender.rewrite import image_uses, pod_specs
from tests.deploy.deploycli import MINI_MESH, R, decoded_config, ok, one_line_error, run_deploy
from tests.fakekube.fixtures import KubeUnderTest

HAND_WRITTEN = str(Path(__file__).parent / "data" / "hand-written.yaml")


def manifest_args(kube: KubeUnderTest, *extra: str) -> list[str]:
    """``apply_args`` for --manifests instead of the chart."""
    return [a for a in apply_args(kube, *extra) if a not in ("--chart", MINI_MESH)]


def apply_args(kube: KubeUnderTest, *extra: str) -> list[str]:
    return [
        "apply",
        "--registry-server",
        R,
        "--chart",
        MINI_MESH,
        "--namespace",
        kube.ns("nginx-mesh"),
        "--skip-preflight",
        *kube.cli_args(),
        *extra,
    ]


@pytest.mark.parametrize(
    ("flags", "stdin", "message"),
    [
        (["--registry-username", "u"], "", "--registry-username must be used with"),
        (
            ["--registry-password", "p"],
            "",
            "--registry-password must be used with --registry-username",
        ),
        (["--registry-password-stdin"], "p\n", "--registry-password must be used with"),
        (
            ["--registry-key", "key.json", "--registry-username", "u"],
            "",
            "--registry-key cannot be used with --registry-username or --registry-password",
        ),
        (
            ["--registry-key", "key.json", "--registry-password", "p"],
            "",
            "--registry-key cannot be used with",
        ),
        (["--registry-key", "missing.json"], "", "--registry-key missing.json: cannot read"),
        (
            ["--registry-key", "not-json.txt"],
            "",
            "--registry-key not-json.txt: not a JSON key file",
        ),
        (
            ["--registry-username", "u", "--registry-password-stdin", "--manifests", "-"],
            "p\n",
            "--registry-password-stdin and --manifests - both want standard input",
        ),
        (["--namespace", "Not_Valid"], "", "invalid --namespace 'Not_Valid'"),
        (["--image-tag", "a b"], "", "invalid --image-tag 'a b'"),
    ],
)
def test_bad_flags_are_one_line_exit_2_and_nothing_is_sent(
    fake_kube: KubeUnderTest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    stdin: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key.json").write_text('{"type": "service_account"}')
    (tmp_path / "not-json.txt").write_text("hello")
    result = run_deploy(*apply_args(fake_kube), *flags, input=stdin)
    assert message in one_line_error(result, 2)
    assert fake_kube.server is not None and fake_kube.server.requests == []


def test_bad_registry_server_is_exit_2() -> None:
    result = run_deploy("render", "--registry-server", "https://reg.example", "-o", "-")
    assert "give host[:port][/path] without a scheme" in one_line_error(result, 2)


def test_apply_creates_the_mesh_and_reapplying_changes_nothing(kube: KubeUnderTest) -> None:
    namespace = kube.ns("nginx-mesh")
    args = [*apply_args(kube, "--disable-public-images", "--no-wait"), "--registry-username", "u"]
    first = ok(run_deploy(*args, "--registry-password-stdin", input="pw\n"))
    assert "installed: Helm release nginx-service-mesh revision 1" in first.stdout
    assert "pw" not in first.stdout + first.stderr
    secret = kube.get("v1", "Secret", "nginx-mesh-registry-key", namespace)
    assert secret is not None
    assert decoded_config(secret)["auths"][R]["password"] == "pw"
    deployment = kube.get("apps/v1", "Deployment", "nginx-mesh-controller", namespace)
    assert deployment is not None
    assert [u.image for u in image_uses(deployment)] == [f"{R}/nginx-mesh-controller:2.0.0"]

    again = ok(run_deploy(*args, "--registry-password-stdin", input="pw\n"))
    assert "upgraded: Helm release nginx-service-mesh revision 2" in again.stdout
    same = kube.get("apps/v1", "Deployment", "nginx-mesh-controller", namespace)
    assert same is not None
    version = deployment["metadata"]["resourceVersion"]
    assert same["metadata"]["resourceVersion"] == version  # nothing in it changed
    assert len(kube.list("v1", "Secret", None, "usage=nginx-mesh-registry-key")) == 1


def test_new_password_updates_the_secret_in_place(kube: KubeUnderTest) -> None:
    namespace = kube.ns("nginx-mesh")
    base = [*apply_args(kube, "--no-wait"), "--registry-username", "u", "--registry-password-stdin"]
    ok(run_deploy(*base, input="old\n"))
    ok(run_deploy(*base, input="new\n"))
    secret = kube.get("v1", "Secret", "nginx-mesh-registry-key", namespace)
    assert secret is not None and decoded_config(secret)["auths"][R]["password"] == "new"


def test_password_flag_works_with_the_seeds_warning(fake_kube: KubeUnderTest) -> None:
    result = ok(
        run_deploy(
            *apply_args(fake_kube, "--no-wait"),
            "--registry-username",
            "u",
            "--registry-password",
            "pw",
        )
    )
    assert (
        "Warning: Using the --registry-password flag can expose your plain text password on the"
        " console and in the console history." in result.stderr
    )


def test_password_from_environment_without_warning(fake_kube: KubeUnderTest) -> None:
    result = ok(
        run_deploy(
            *apply_args(fake_kube, "--no-wait"),
            "--registry-username",
            "u",
            env={"MESHLIFT_REGISTRY_PASSWORD": "pw"},
        )
    )
    assert "Warning" not in result.stderr


def test_gke_key_secret(fake_kube: KubeUnderTest, tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account", "project_id": "p"}\n')
    ok(run_deploy(*apply_args(fake_kube, "--no-wait"), "--registry-key", str(key)))
    secret = fake_kube.get("v1", "Secret", "nginx-mesh-registry-key", "nginx-mesh")
    assert secret is not None
    entry = decoded_config(secret)["auths"][R]
    assert (entry["username"], entry["password"]) == ("_json_key", key.read_text())


def test_no_credentials_no_secret_and_no_pull_secrets(fake_kube: KubeUnderTest) -> None:
    ok(run_deploy(*apply_args(fake_kube, "--no-wait")))
    assert fake_kube.list("v1", "Secret", "nginx-mesh", "usage=nginx-mesh-registry-key") == []
    deployment = fake_kube.get("apps/v1", "Deployment", "nginx-mesh-metrics", "nginx-mesh")
    assert (
        deployment is not None and "imagePullSecrets" not in deployment["spec"]["template"]["spec"]
    )


def test_dry_run_prints_manifests_without_secret_data_and_sends_nothing(
    fake_kube: KubeUnderTest,
) -> None:
    result = ok(
        run_deploy(
            *apply_args(fake_kube, "--dry-run"),
            "--registry-username",
            "u",
            "--registry-password-stdin",
            input="s3cr3t\n",
        )
    )
    assert ".dockerconfigjson: <redacted>" in result.stdout
    assert "s3cr3t" not in result.output
    assert base64.b64encode(b"u:s3cr3t").decode() not in result.output
    assert "kind: MutatingWebhookConfiguration" in result.stdout
    assert "dry run: install of " in result.stderr
    assert fake_kube.server is not None and fake_kube.server.mutations() == []


def test_apply_hand_written_manifests_with_cronjobs(kube: KubeUnderTest) -> None:
    apps = kube.create_namespace("apps")
    text = Path(HAND_WRITTEN).read_text().replace("namespace: apps", f"namespace: {apps}")
    manifest = kube.workdir / "hand-written.yaml"
    manifest.write_text(
        text.replace("busybox:1.36", "ubuntu:22.04").replace(
            "nats@sha256:" + "0" * 64, "nats:2.9-alpine"
        )
    )
    args = manifest_args(kube, "--manifests", str(manifest), "--disable-public-images", "--no-wait")
    ok(
        run_deploy(
            *args, "--registry-username", "u", input=None, env={"MESHLIFT_REGISTRY_PASSWORD": "p"}
        )
    )
    cronjob = kube.get("batch/v1", "CronJob", "nightly", apps)
    assert cronjob is not None
    (spec,) = pod_specs(cronjob)
    assert [c["image"] for c in spec["initContainers"] + spec["containers"]] == [
        f"{R}/curl:latest",
        f"{R}/kubectl:latest",
    ]
    assert spec["imagePullSecrets"] == [{"name": "nginx-mesh-registry-key"}]


def test_wait_times_out_with_the_workload_named(fake_kube: KubeUnderTest) -> None:
    assert fake_kube.server is not None
    fake_kube.server.store.set_workloads_ready(False)
    result = run_deploy(*apply_args(fake_kube, "--timeout", "1s"))
    error = one_line_error(result, 1, only=False)
    assert "Deployment/nginx-mesh/nginx-mesh-controller not ready" in error
    assert "rolling out Deployment nginx-mesh/nginx-mesh-controller: 0/1 available" in result.stderr


def test_wait_follows_rollouts_until_ready(fake_kube: KubeUnderTest) -> None:
    server = fake_kube.server
    assert server is not None
    server.store.set_workloads_ready(False)

    def roll_out_once_watched() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any("watch=" in r.query.lower() for r in server.requests):
                time.sleep(2.5)  # long enough for apply's display to show a look or two
                server.store.set_workloads_ready(True)
                return
            time.sleep(0.05)

    controller = threading.Thread(target=roll_out_once_watched)
    controller.start()
    result = ok(run_deploy(*apply_args(fake_kube, "--timeout", "30s")))
    controller.join()
    assert "installed: Helm release nginx-service-mesh revision 1" in result.stdout
    assert "rolling out Deployment nginx-mesh/nginx-mesh-controller: 0/1 available" in result.stderr
    assert "rolled out DaemonSet nginx-mesh/spire-agent: 1/1 available" in result.stderr


def test_namespace_created_by_apply_is_marked_a_pre_existing_one_is_not(
    fake_kube: KubeUnderTest,
) -> None:
    ok(run_deploy(*apply_args(fake_kube, "--no-wait")))
    mesh = fake_kube.get("v1", "Namespace", "nginx-mesh")
    assert mesh is not None
    assert mesh["metadata"]["annotations"] == {"meshlift/created-by": "deploy-apply"}
    ok(run_deploy("remove", *fake_kube.cli_args()))
    fake_kube.create_namespace("mine")
    ok(run_deploy(*apply_args(fake_kube, "--no-wait"), "--namespace", "mine"))
    mine = fake_kube.get("v1", "Namespace", "mine")
    assert mine is not None and "meshlift/created-by" not in (
        mine["metadata"].get("annotations") or {}
    )


def test_kubeconfig_from_environment_and_context_errors(
    fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    args = ["apply", "--registry-server", R, "--chart", MINI_MESH, "--skip-preflight", "--no-wait"]
    ok(run_deploy(*args, env={"KUBECONFIG": str(fake_kube.kubeconfig)}))
    unknown = run_deploy(*args, "--kubeconfig", str(fake_kube.kubeconfig), "--context", "prod")
    assert "--context prod: not in" in one_line_error(unknown, 2)
    assert "(contexts: fake)" in unknown.stderr
    missing = run_deploy(*args, "--kubeconfig", str(tmp_path / "nope"))
    assert "no such file" in one_line_error(missing, 2)


def test_unreachable_cluster_is_one_line_exit_1(fake_kube: KubeUnderTest, tmp_path: Path) -> None:
    config = json.loads(json.dumps(__import__("yaml").safe_load(fake_kube.kubeconfig.read_text())))
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    dead = tmp_path / "dead"
    dead.write_text(json.dumps(config))
    result = run_deploy(
        "apply",
        "--registry-server",
        R,
        "--chart",
        MINI_MESH,
        "--skip-preflight",
        "--kubeconfig",
        str(dead),
    )
    line = one_line_error(result, 1)
    assert "cannot reach the Kubernetes API at http://127.0.0.1:9" in line
    assert "fake-token" not in result.output
