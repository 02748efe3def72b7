"""deploy render: the manifests apply would send, to stdout or a directory, no cluster needed."""

from __future__ import annotations

from pathlib import Path

from deploy.manifests import load_paths, parse_documents
from tests.deploy.deploycli import MINI_MESH, R, ok, one_line_error, run_deploy


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


def test_render_to_a_directory_one_file_per_object_in_apply_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["render", "--registry-server", R, "--chart", MINI_MESH]
    result = ok(run_deploy(*args, "--environment", "openshift", "-o", str(out)))
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files[0] == "01-customresourcedefinition-httproutegroups.specs.smi-spec.io.yaml"
    assert (
        files[-1] == f"{len(files)}-mutatingwebhookconfiguration-nginx-mesh-sidecar-injector.yaml"
    )
    hooks = sorted((p.name for p in (out / "hooks").iterdir()), key=lambda n: n.split("-")[2])
    assert hooks == [
        "pre-install-01-job-check-cluster.yaml",
        "pre-delete-02-job-turn-proxies-transparent.yaml",
        "post-delete-03-serviceaccount-post-delete.yaml",
        "post-delete-04-job-remove-spiffeids.yaml",
    ]
    assert f"wrote {len(files)} manifests to {out} and 4 hooks to {out / 'hooks'}" in (
        result.stderr
    )
    kinds = {o["kind"] for o in load_paths([str(p) for p in out.iterdir() if p.is_file()])}
    assert "CSIDriver" in kinds
    assert not any("check-cluster" in name for name in files)
    again = run_deploy(*args, "-o", str(out))
    assert "not an empty directory" in one_line_error(again, 2)


def test_render_accepts_apply_options_and_contacts_nothing(tmp_path: Path) -> None:
    objects = render(
        "--kubeconfig",
        str(tmp_path / "absent"),
        "--context",
        "none",
        "--no-wait",
        "--timeout",
        "1m",
        "-o",
        "-",
    )
    assert objects


def test_hooks_are_listed_apart_by_phase_never_among_the_objects() -> None:
    result = ok(run_deploy("render", "--registry-server", R, "--chart", MINI_MESH, "-o", "-"))
    objects, _, hooks = result.stdout.partition("# Helm hooks: not applied")
    names = {o["metadata"]["name"] for o in parse_documents(objects, "render")}
    assert {"nginx-mesh-controller", "meshconfig"} <= names
    assert not names & {"check-cluster", "turn-proxies-transparent", "remove-spiffeids"}
    assert parse_documents(result.stdout, "render") == parse_documents(objects, "render")
    headers = [line for line in hooks.splitlines() if line.startswith("# hook ")]
    assert headers == [
        "# hook pre-install (weight 0): Job nginx-mesh/check-cluster",
        "# hook pre-delete (weight 0): Job nginx-mesh/turn-proxies-transparent",
        "# hook post-delete (weight -5): ServiceAccount nginx-mesh/post-delete",
        "# hook post-delete (weight 0): Job nginx-mesh/remove-spiffeids",
    ]
    assert "#           image: bitnami/kubectl" in hooks


def test_bad_timeout_is_a_usage_error() -> None:
    result = run_deploy("render", "--registry-server", R, "--timeout", "soon", "-o", "-")
    assert result.exit_code == 2
    assert "invalid duration 'soon'" in result.stderr


def test_a_tag_with_a_letter_outside_ascii_is_refused_before_anything_is_rendered() -> None:
    args = ["render", "--registry-server", R, "--chart", MINI_MESH, "-o", "-"]
    result = run_deploy(*args, "--image-tag", "2.0.0é")
    assert one_line_error(result, 2) == "Error: invalid --image-tag '2.0.0é'"
