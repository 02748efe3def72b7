"""deploy render: the manifests apply would send, to stdout or a directory, no cluster needed."""

from __future__ import annotations

from pathlib import Path

from deploy.manifests import load_paths, parse_documents
from tests.deploy.deploycli import R, ok, one_line_error, run_deploy


def render(*args: str, input: str | None = None) -> list[dict[str, object]]:
    result = ok(run_deploy("render", "--registry-server", R, *args, input=input))
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


def test_render_to_a_directory_one_file_per_object_in_apply_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = ok(
        run_deploy("render", "--registry-server", R, "--environment", "openshift", "-o", str(out))
    )
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "01-customresourcedefinition-trafficsplits.split.smi-spec.io.yaml"
    assert (
        files[-1] == f"{len(files)}-mutatingwebhookconfiguration-nginx-mesh-sidecar-injector.yaml"
    )
    assert f"wrote {len(files)} manifests to {out}" in result.stderr
    kinds = {o["kind"] for o in load_paths([str(out)])}
    assert "CSIDriver" in kinds
    again = run_deploy("render", "--registry-server", R, "-o", str(out))
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


def test_bad_timeout_is_a_usage_error() -> None:
    result = run_deploy("render", "--registry-server", R, "--timeout", "soon", "-o", "-")
    assert result.exit_code == 2
    assert "invalid duration 'soon'" in result.stderr
