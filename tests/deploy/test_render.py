"""deploy render: what the release would hold, to stdout or a directory, no cluster needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.chart.manifests import load_paths, parse_documents
from tests.chartrepo import official_chart
from tests.deploy.deploycli import (
    MINI_MESH,
    PLACEHOLDER,
    R,
    ok,
    one_line_error,
    run_deploy,
    strings_in,
)


def render(*args: str, input: str | None = None) -> list[dict[str, object]]:
    result = ok(
        run_deploy("render", "--registry-server", R, "--chart", MINI_MESH, *args, input=input)
    )
    return parse_documents(result.stdout, "render")


def test_render_to_stdout_has_every_image_under_the_registry_and_no_secret_data() -> None:
    objects = render(
        "--disable-public-images",
        "--registry-username",
        "u",
        "--registry-password-stdin",
        "-o",
        "-",
        input="s3cr3t\n",
    )
    text = str(objects)
    assert "s3cr3t" not in text
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["data"] == {".dockerconfigjson": "<redacted>"}
    assert f"{R}/nats:2.9-alpine" in text and "docker-registry.nginx.com" not in text
    assert "replaced-by-meshlift" not in text  # the chart's own Secret is replaced by ours


def test_render_to_a_directory_one_file_per_object_the_hooks_apart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["render", "--registry-server", R, "--chart", MINI_MESH]
    result = ok(run_deploy(*args, "--environment", "openshift", "-o", str(out)))
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files[:2] == [
        "01-customresourcedefinition-httproutegroups.specs.smi-spec.io.yaml",
        "02-customresourcedefinition-trafficsplits.split.smi-spec.io.yaml",
    ]
    assert f"{len(files)}-daemonset-spiffe-csi-driver.yaml" in files
    hooks = sorted(p.name for p in (out / "hooks").iterdir())
    assert hooks == [
        "01-job-turn-proxies-transparent.yaml",
        "02-serviceaccount-post-delete.yaml",
        "03-job-remove-spiffeids.yaml",
        "04-job-check-cluster.yaml",
    ]
    assert f"wrote {len(files)} manifests to {out} and 4 hooks to {out / 'hooks'}" in (
        result.stderr
    )
    kinds = {o["kind"] for o in load_paths([str(p) for p in out.iterdir() if p.is_file()])}
    assert "CSIDriver" in kinds
    for hook in load_paths([str(out / "hooks")]):
        assert "helm.sh/hook" in hook["metadata"]["annotations"]
    again = run_deploy(*args, "-o", str(out))
    assert "not an empty directory" in one_line_error(again, 2)


def test_render_accepts_apply_options_and_contacts_nothing(tmp_path: Path) -> None:
    objects = render(
        "--kubeconfig",
        str(tmp_path / "absent"),
        "--context",
        "none",
        "--skip-preflight",
        "--dry-run",
        "-o",
        "-",
    )
    assert objects


HOOKS_HEADER = "# Helm hooks: Helm runs them at their phase; not for kubectl apply.\n"


def uncommented(hooks: str) -> list[dict[str, Any]]:
    """The hooks ``render -o -`` prints commented out after the objects."""
    lines = (line.removeprefix("#").removeprefix(" ") for line in hooks.splitlines())
    return parse_documents("\n".join(lines), "hooks")


def test_hooks_follow_the_objects_commented_out_with_their_annotations() -> None:
    result = ok(run_deploy("render", "--registry-server", R, "--chart", MINI_MESH, "-o", "-"))
    objects, header, hooks = result.stdout.partition(HOOKS_HEADER)
    assert header
    names = {o["metadata"]["name"] for o in parse_documents(objects, "render")}
    assert {"nginx-mesh-controller", "meshconfig"} <= names
    assert not names & {"check-cluster", "turn-proxies-transparent", "remove-spiffeids"}
    assert parse_documents(result.stdout, "render") == parse_documents(objects, "render")
    assert all(line.startswith("#") for line in hooks.strip().splitlines())
    found = {
        o["metadata"]["name"]: o["metadata"]["annotations"]["helm.sh/hook"]
        for o in uncommented(hooks)
    }
    assert found == {
        "check-cluster": "pre-install",
        "turn-proxies-transparent": "pre-delete",
        "post-delete": "post-delete",
        "remove-spiffeids": "post-delete",
    }


def test_bad_timeout_is_a_usage_error() -> None:
    result = run_deploy("apply", "--registry-server", R, "--timeout", "soon")
    assert result.exit_code == 2
    assert "invalid duration 'soon'" in result.stderr


def test_a_tag_with_a_letter_outside_ascii_is_refused_before_anything_is_rendered() -> None:
    args = ["render", "--registry-server", R, "--chart", MINI_MESH, "-o", "-"]
    result = run_deploy(*args, "--image-tag", "2.0.0é")
    assert one_line_error(result, 2) == "Error: invalid --image-tag '2.0.0é'"


def rendered_files(directory: Path) -> list[dict[str, Any]]:
    """Every object ``deploy render -o DIR`` wrote, the hooks included."""
    return load_paths([str(directory)])


def openshift_render() -> list[str]:
    """``deploy render`` of the official chart for OpenShift with a login; ``-o`` comes next."""
    return [
        "render", "--registry-server", R, "--chart", str(official_chart()), "--environment",
        "openshift", "--registry-username", "u", "--registry-password-stdin", "-o",
    ]  # fmt: skip


def test_openshift_render_of_the_official_chart_has_no_placeholder_login(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok(
        run_deploy(
            *openshift_render(),
            str(out),
            input="pw\n",
        )
    )
    objects = rendered_files(out)
    names = {o["metadata"]["name"] for o in objects}
    assert "csi-driver-cleanup" in names  # the post-delete ConfigMap holding secret.yaml
    holding = sorted(
        f"{o['kind']} {o['metadata']['name']}"
        for o in objects
        if any(PLACEHOLDER in text for text in strings_in(o))
    )
    assert holding == []
    (meshconfigclass,) = [o for o in objects if o["kind"] == "MeshConfigClass"]
    assert "namespace" not in meshconfigclass["metadata"]  # cluster-scoped, as its CRD says


def test_render_never_shows_the_registry_password_even_inside_a_config_map() -> None:
    result = ok(
        run_deploy(
            *openshift_render(),
            "-",
            input="s3cr3t-pw\n",
        )
    )
    objects, _, hooks = result.stdout.partition(HOOKS_HEADER)
    everything = parse_documents(objects, "render") + uncommented(hooks)
    assert "csi-driver-cleanup" in {o["metadata"]["name"] for o in everything}
    assert [t for o in everything for t in strings_in(o) if "s3cr3t" in t] == []


def test_the_charts_kube_version_is_checked_with_helms_wording() -> None:
    args = ["render", "--registry-server", R, "--chart", str(official_chart()), "-o", "-"]
    old = run_deploy(*args, "--kube-version", "1.20.0")
    assert one_line_error(old, 2).endswith(
        "requires kubeVersion: >= 1.22-0 which is incompatible with Kubernetes 1.20.0"
    )
    assert old.stdout == ""
    current = ok(run_deploy(*args, "--kube-version", "1.30.0"))
    assert any(o["kind"] == "Deployment" for o in parse_documents(current.stdout, "render"))
