"""The chart: where it comes from, Helm's values and schema, and the helm binary fallback."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from deploy.chart.manifests import parse_documents
from tests.chartrepo import build_chart
from tests.deploy.deploycli import MINI_MESH, R, ok, one_line_error, package_chart, run_deploy
from tests.fakekube.fixtures import KubeUnderTest
from tests.imagefactory import push_chart
from tests.registries import Registry

ROOT = Path(__file__).parents[2]


def render(*args: str, input: str | None = None) -> list[dict[str, Any]]:
    result = ok(run_deploy("render", "--registry-server", R, *args, "-o", "-", input=input))
    return parse_documents(result.stdout, "render")


def meshconfig(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (config,) = [o for o in objects if o["metadata"]["name"] == "meshconfig"]
    return dict(json.loads(config["data"]["meshconfig.json"]))


def test_values_follow_helms_precedence(tmp_path: Path) -> None:
    first, second, mode = tmp_path / "1.yaml", tmp_path / "2.yaml", tmp_path / "mode"
    first.write_text("accessControlMode: deny\nmtls: {mode: strict}\n")
    second.write_text("mtls: {mode: 'off'}\n")
    mode.write_text("strict")
    config = meshconfig(render("--chart", MINI_MESH, "-f", str(first), "--values", str(second)))
    assert (config["accessControlMode"], config["mtls"]["mode"]) == ("deny", "off")
    config = meshconfig(
        render(
            "--chart",
            MINI_MESH,
            "--set-file",
            f"mtls.mode={mode}",  # --set-file comes after --set, whatever the order given
            "--set",
            "mtls.mode=permissive,accessControlMode=deny",
            "-f",
            str(first),
        )
    )
    assert (config["accessControlMode"], config["mtls"]["mode"]) == ("deny", "strict")
    config = meshconfig(
        render("--chart", MINI_MESH, "--set-string", "mtls.mode=off", "--set", "mtls.mode=strict")
    )
    assert config["mtls"]["mode"] == "off"


def test_meshlift_sets_the_registry_values_and_the_key_name_without_the_password() -> None:
    objects = render(
        "--chart",
        MINI_MESH,
        "--disable-public-images",
        "--image-tag",
        "2.0.1",
        "--registry-username",
        "u",
        "--registry-password-stdin",
        input="s3cr3t\n",
    )
    registry = meshconfig(objects)["registry"]
    assert registry == {
        "disablePublicImages": True,
        "imageTag": "2.0.1",
        "registryKeyName": "nginx-mesh-registry-key",
        "server": R,
        "sidecarImage": f"{R}/nginx-mesh-sidecar:2.0.1",
        "sidecarInitImage": f"{R}/nginx-mesh-init:2.0.1",
    }
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["metadata"]["labels"]["usage"] == "nginx-mesh-registry-key"
    assert "s3cr3t" not in str(objects)
    without = meshconfig(render("--chart", MINI_MESH))["registry"]
    assert without["registryKeyName"] == ""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--set", "mtls.mode=bogus"],
            "values do not match values.schema.json: mini-mesh:; at '/mtls/mode':"
            " value must be one of 'off', 'permissive', 'strict'",
        ),
        (["--set", "registry.imagePullPolicy=Sometimes"], "at '/registry/imagePullPolicy'"),
        (["--set", "registry.server=other.example"], "the chart values set registry.server,"),
        (["--set", "a"], '--set a: key "a" has no value'),
        (["--set-json", "a={"], "--set-json a={: "),
        (["--set-file", "a=/nonexistent"], "--set-file a=/nonexistent: open /nonexistent"),
        (["-f", "/nonexistent.yaml"], "--values /nonexistent.yaml: cannot read"),
    ],
)
def test_bad_values_are_exit_2_naming_them(flags: list[str], message: str) -> None:
    result = run_deploy("render", "--registry-server", R, "--chart", MINI_MESH, *flags, "-o", "-")
    assert message in one_line_error(result, 2)
    assert result.stdout == ""


def test_the_registry_login_is_refused_as_a_chart_value() -> None:
    args = ["render", "--registry-server", R, "--chart", MINI_MESH, "-o", "-"]
    result = run_deploy(*args, "--set", "registry.username=u", "--set", "registry.password=hunter2")
    assert "the chart values set registry." in one_line_error(result, 2)
    assert "hunter2" not in result.output


def test_apply_refuses_bad_values_before_changing_anything(fake_kube: KubeUnderTest) -> None:
    result = run_deploy(
        "apply",
        "--registry-server",
        R,
        "--chart",
        MINI_MESH,
        "--set",
        "mtls.mode=bogus",
        *fake_kube.cli_args(),
    )  # no --skip-preflight: the values are refused before the registry is asked
    assert "values do not match values.schema.json" in one_line_error(result, 2)
    assert fake_kube.server is not None and fake_kube.server.mutations() == []


def test_values_need_a_chart(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    result = run_deploy(
        "render", "--registry-server", R, "--manifests", str(manifest), "--set", "a=1", "-o", "-"
    )
    assert "--set, --set-string, --set-file and --values need a chart" in one_line_error(result, 2)


def list_chart(tmp_path: Path) -> str:
    """A chart whose one ConfigMap shows its values as JSON (meshlift's own left out)."""
    build_chart(
        tmp_path,
        "lists",
        "1.0.0",
        files={
            "values.yaml": "items: []\n",
            "templates/values.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: values}\n"
                "data:\n  values.json:"
                ' {{ omit .Values "registry" "environment" | toJson | quote }}\n'
            ),
        },
    )
    return str(tmp_path / "lists-1.0.0.tgz")


def chart_values(chart: str, *flags: str) -> dict[str, Any]:
    """The user values ``chart`` saw, rendered by ``deploy render`` with ``flags``."""
    (config,) = render("--chart", chart, *flags)
    return dict(json.loads(config["data"]["values.json"]))


def test_set_replaces_one_element_of_a_list_from_a_values_file(tmp_path: Path) -> None:
    values = tmp_path / "items.yaml"
    values.write_text("items: [a, b]\n")
    chart = list_chart(tmp_path)
    assert chart_values(chart, "-f", str(values), "--set", "items[1]=c") == {"items": ["a", "c"]}
    assert chart_values(chart, "-f", str(values), "--set", "items[2]=c") == {
        "items": ["a", "b", "c"]
    }


def test_every_kind_of_value_flag_applies_in_helms_order(tmp_path: Path) -> None:
    """-f, --set-json, --set, --set-string, --set-file, --set-literal, however they are given."""
    values, content = tmp_path / "values.yaml", tmp_path / "content.txt"
    values.write_text("k1: file\nk0: file\n")
    content.write_text("from-a-file")
    flags = [
        ("--set-literal", "k5=a,b={c}"),
        ("--set-file", f"k5={content}"),
        ("--set-file", f"k4={content}"),
        ("--set-string", "k4=string"),
        ("--set-string", "k3=2"),
        ("--set", "k3=1"),
        ("--set", "k2=set"),
        ("--set-json", 'k2={"json": true}'),
        ("--set-json", 'k1=["json", 1]'),
        ("-f", str(values)),
    ]
    assert chart_values(list_chart(tmp_path), *(a for pair in flags for a in pair)) == {
        "items": [],
        "k0": "file",
        "k1": ["json", 1],
        "k2": "set",
        "k3": "2",
        "k4": "from-a-file",
        "k5": "a,b={c}",
    }


def test_chart_as_tgz_file_and_missing_chart(tmp_path: Path) -> None:
    archive = tmp_path / "mini-mesh-2.0.0.tgz"
    archive.write_bytes(package_chart())
    assert meshconfig(render("--chart", str(archive)))["registry"]["server"] == R
    missing = run_deploy(
        "render", "--registry-server", R, "--chart", str(tmp_path / "no"), "-o", "-"
    )
    assert "no such file or directory" in one_line_error(missing, 2)
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(b"not a chart")
    result = run_deploy("render", "--registry-server", R, "--chart", str(broken), "-o", "-")
    assert f"--chart {broken}" not in result.stderr
    assert f"{broken}: not a Helm chart" in one_line_error(result, 2)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the CLI's stderr is what the test reads."""


def test_chart_from_a_url(tmp_path: Path) -> None:
    (tmp_path / "mini-mesh-2.0.0.tgz").write_bytes(package_chart())
    handler = functools.partial(_QuietFiles, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        config = meshconfig(render("--chart", f"{url}/mini-mesh-2.0.0.tgz"))
        assert config["registry"]["server"] == R
        missing = run_deploy(
            "render", "--registry-server", R, "--chart", f"{url}/no.tgz", "-o", "-"
        )
        assert one_line_error(missing, 2) == f"Error: --chart {url}/no.tgz: HTTP 404"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def lock_with_chart(tmp_path: Path, digest: str | None = None) -> Path:
    """The embedded lock with its chart renamed to mini-mesh (its last entry), pinned if asked."""
    text = (ROOT / "mirror" / "images.lock").read_text()
    text = text.replace('name = "nginx-service-mesh"', 'name = "mini-mesh"').rstrip("\n") + "\n"
    lock = tmp_path / ("pinned.lock" if digest else "images.lock")
    lock.write_text(text + (f'digest = "{digest}"\n' if digest else ""))
    return lock


def test_chart_from_the_lock_pulled_from_the_registry_with_the_deploy_credentials(
    basic_registry: Registry, unique_repo: object, tmp_path: Path
) -> None:
    assert basic_registry.username and basic_registry.password
    prefix = unique_repo("nsm")  # type: ignore[operator]
    server = f"{basic_registry.host}/{prefix}"
    login = ["--registry-username", basic_registry.username, "--registry-password-stdin"]
    no_config = {"DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    args = ["render", "--registry-server", server, "--lock", str(lock_with_chart(tmp_path))]
    absent = run_deploy(*args, *login, "-o", "-", input=basic_registry.password, env=no_config)
    line = one_line_error(absent, 2)
    assert (
        f"no chart to deploy: mini-mesh 2.0.0 is not in the registry ({server}/mini-mesh:2.0.0)"
        in line
    )
    assert f"`mirror sync --registry-server {server}` pushes it there" in line

    digest = push_chart(basic_registry, package_chart(), f"{prefix}/mini-mesh", "2.0.0")
    result = ok(run_deploy(*args, *login, "-o", "-", input=basic_registry.password, env=no_config))
    assert meshconfig(parse_documents(result.stdout, "render"))["registry"]["server"] == server
    assert basic_registry.password not in result.output
    anonymous = run_deploy(*args, "-o", "-", env=no_config)
    assert "authentication required" in one_line_error(anonymous, 1)

    other = "sha256:" + "0" * 64
    pinned = [
        "render",
        "--registry-server",
        server,
        "--lock",
        str(lock_with_chart(tmp_path, other)),
    ]
    wrong = run_deploy(*pinned, *login, "-o", "-", input=basic_registry.password, env=no_config)
    assert f"the chart's digest is {digest}, the lock has {other}" in one_line_error(wrong, 1)
    oci = run_deploy(
        "render",
        "--registry-server",
        server,
        "--chart",
        f"oci://{server}/mini-mesh:2.0.0",
        *login,
        "-o",
        "-",
        input=basic_registry.password,
        env=no_config,
    )
    assert meshconfig(parse_documents(ok(oci).stdout, "render"))["registry"]["server"] == server


HELM_TEMPLATE_OUTPUT = """\
---
# Source: mini-mesh/crds/trafficsplit.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: trafficsplits.split.smi-spec.io
spec:
  group: split.smi-spec.io
  scope: Namespaced
  names: {kind: TrafficSplit, plural: trafficsplits}
  versions: [{name: v1alpha3, served: true, storage: true}]
---
# Source: mini-mesh/templates/meshconfig.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: meshconfig
data:
  meshconfig.json: |
    {"registry": {"sidecarImage": "reg.example:5000/nginx-mesh-sidecar:2.0.0"}}
---
# Source: mini-mesh/templates/delete-hooks.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: remove-spiffeids
  annotations:
    "helm.sh/hook": post-delete
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: r, image: "reg.example:5000/kubectl"}]
"""


def _without_library(tmp_path: Path, helm: bool) -> dict[str, str]:
    """An environment where ``helm_python`` cannot load, with a stand-in helm on PATH if asked."""
    broken = tmp_path / "broken" / "helm_python"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libhelm_c.so: cannot open')\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if helm:
        (tmp_path / "out.yaml").write_text(HELM_TEMPLATE_OUTPUT)
        script = bin_dir / "helm"
        args, out = tmp_path / "args", tmp_path / "out.yaml"
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {args}\nexec /bin/cat {out}\n')
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    env["PYTHONPATH"] = f"{tmp_path / 'broken'}{os.pathsep}{ROOT}"
    env["PATH"] = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}"
    return env


def _deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_library_renders_and_debug_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLIFT_")}
    done = _deploy(
        env, "--debug", "render", "--registry-server", R, "--chart", MINI_MESH, "-o", "-"
    )
    assert done.returncode == 0, done.stderr
    assert f"rendered {MINI_MESH} with helm-python 0.2.2 (Helm v4." in done.stderr


def test_without_the_library_a_helm_binary_renders(tmp_path: Path) -> None:
    env = _without_library(tmp_path, helm=True)
    done = _deploy(
        env,
        "--debug",
        "render",
        "--registry-server",
        R,
        "--chart",
        MINI_MESH,
        "--disable-public-images",
        "--set",
        "mtls.mode=strict",
        "-o",
        "-",
    )
    assert done.returncode == 0, done.stderr
    assert f"rendered {MINI_MESH} with helm binary {tmp_path / 'bin' / 'helm'}" in done.stderr
    assert (tmp_path / "args").read_text().splitlines() == [
        "template",
        "nginx-service-mesh",
        MINI_MESH,
        "--namespace",
        "nginx-mesh",
        "--include-crds",
        "--set",
        "mtls.mode=strict",
        "--set-string",
        f"registry.server={R}",
        "--set-string",
        "registry.imageTag=2.0.0",
        "--set",
        "registry.disablePublicImages=true",
        "--set-string",
        "environment=kubernetes",
    ]
    objects, _, hooks = done.stdout.partition("# Helm hooks")
    kinds = [o["kind"] for o in parse_documents(objects, "render")]
    assert kinds == ["CustomResourceDefinition", "ConfigMap"]
    assert "#   name: remove-spiffeids" in hooks
    assert "#     helm.sh/hook: post-delete" in hooks


def test_without_library_or_binary_exit_2_says_what_to_do(tmp_path: Path) -> None:
    done = _deploy(
        _without_library(tmp_path, helm=False),
        "render",
        "--registry-server",
        R,
        "--chart",
        MINI_MESH,
        "-o",
        "-",
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "Error: cannot render the chart: the helm-python library does not load here and no"
        " helm binary is on PATH; install one, or pass rendered YAML with --manifests"
    )


def test_apply_without_any_chart_is_exit_2_saying_how_to_get_one(
    fake_kube: KubeUnderTest, tmp_path: Path
) -> None:
    text = (ROOT / "mirror" / "images.lock").read_text()
    lock = tmp_path / "no-chart.lock"
    lock.write_text(text[: text.index("[[charts]]")])
    result = run_deploy("apply", "--registry-server", R, "--lock", str(lock), *fake_kube.cli_args())
    assert one_line_error(result, 2) == (
        "Error: no chart to deploy: the lock lists no [[charts]]; give --chart"
        " PATH|URL|oci://REF (or rendered YAML with --manifests)"
    )
    assert fake_kube.server is not None and fake_kube.server.mutations() == []
