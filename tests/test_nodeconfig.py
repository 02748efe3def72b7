"""``mirror node-config``: CRI-O, k3s and OpenShift mirror configuration, and Podman pulling
public names from the private registry through the generated file, with no other network."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.imagefactory import make_image, push
from tests.mirrorcli import REPO_ROOT, run_mirror
from tests.podman import pull_offline
from tests.registries import RegistryFactory

SCHEMA = yaml.safe_load(
    (REPO_ROOT / "tests" / "data" / "openshift" / "mirrorsets.schema.yaml").read_text()
)
R = "reg.example:5000"
LOCK = """\
version = 1

[[images]]
source = "nats:2.9-alpine"

[[images]]
source = "gcr.io/spiffe-io/spire-agent:1.5.6"

[[images]]
source = "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0"

[[images]]
source = "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.1.0"

[[images]]
source = "quay.io/some.org/web.app:1"
"""


def node_config(tmp_path: Path, *args: str, lock: str = LOCK) -> str:
    """The text ``mirror node-config ARGS`` prints for ``lock``."""
    path = tmp_path / "images.lock"
    path.write_text(lock)
    result = run_mirror("node-config", "--lock", str(path), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(tmp_path: Path, *args: str, lock: str = LOCK) -> str:
    path = tmp_path / "images.lock"
    path.write_text(lock)
    result = run_mirror("node-config", "--lock", str(path), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    return line


def test_crio_has_one_registry_per_source_repository_with_its_mirror_in_r(
    tmp_path: Path,
) -> None:
    text = node_config(
        tmp_path, "--format", "crio", "--registry-server", R, "--insecure-registry", R
    )
    registries = {r["prefix"]: r for r in tomllib.loads(text)["registry"]}
    assert registries["docker.io/library/nats"] == {
        "prefix": "docker.io/library/nats",
        "location": "docker.io/library/nats",
        "mirror": [{"location": f"{R}/nats", "insecure": True}],
    }
    assert registries["gcr.io/spiffe-io/spire-agent"]["mirror"] == [
        {"location": f"{R}/spire-agent", "insecure": True}
    ]
    # Two tags of one repository: one entry.
    assert sorted(registries) == [
        "docker-registry.nginx.com/nsm/nginx-mesh-sidecar",
        "docker.io/library/nats",
        "gcr.io/spiffe-io/spire-agent",
        "quay.io/some.org/web.app",
    ]


def test_crio_marks_only_insecure_hosts(tmp_path: Path) -> None:
    text = node_config(tmp_path, "--format", "crio", "--registry-server", f"{R}/mesh")
    for registry in tomllib.loads(text)["registry"]:
        assert "insecure" not in registry
        ((mirror,),) = [registry["mirror"]]
        assert mirror == {"location": f"{R}/mesh/{registry['prefix'].rsplit('/', 1)[1]}"}


def test_k3s_rewrites_each_repository_of_a_source_registry_to_its_path_in_r(
    tmp_path: Path,
) -> None:
    text = node_config(tmp_path, "--format", "k3s", "--registry-server", f"{R}/mesh")
    mirrors = yaml.safe_load(text)["mirrors"]
    assert mirrors["docker.io"] == {
        "endpoint": [f"https://{R}"],
        "rewrite": {"^library/nats$": "mesh/nats"},
    }
    assert mirrors["quay.io"]["rewrite"] == {r"^some\.org/web\.app$": "mesh/web.app"}
    assert mirrors["docker-registry.nginx.com"]["rewrite"] == {
        "^nsm/nginx-mesh-sidecar$": "mesh/nginx-mesh-sidecar"
    }
    insecure = node_config(
        tmp_path, "--format", "k3s", "--registry-server", R, "--insecure-registry", R
    )
    assert yaml.safe_load(insecure)["mirrors"]["gcr.io"] == {
        "endpoint": [f"http://{R}"],
        "rewrite": {"^spiffe-io/spire-agent$": "spire-agent"},
    }


def test_openshift_mirror_sets_validate_against_the_crd_schemas(tmp_path: Path) -> None:
    text = node_config(tmp_path, "--format", "openshift", "--registry-server", f"{R}/mesh")
    objects = list(yaml.safe_load_all(text))
    assert [o["kind"] for o in objects] == ["ImageDigestMirrorSet", "ImageTagMirrorSet"]
    for obj in objects:
        jsonschema.validate(obj, SCHEMA)
    digest, tag = (o["spec"] for o in objects)
    assert digest["imageDigestMirrors"] == tag["imageTagMirrors"]
    assert {"source": "docker.io/library/nats", "mirrors": [f"{R}/mesh/nats"]} in digest[
        "imageDigestMirrors"
    ]


def test_the_schema_refuses_what_openshift_refuses() -> None:
    good: dict[str, Any] = {
        "apiVersion": "config.openshift.io/v1",
        "kind": "ImageDigestMirrorSet",
        "metadata": {"name": "m"},
        "spec": {"imageDigestMirrors": [{"source": "docker.io/library/nats", "mirrors": [R]}]},
    }
    jsonschema.validate(good, SCHEMA)
    for bad_rule in (
        {"source": "docker.io/library/nats", "mirrors": [f"https://{R}"]},
        {"source": "docker.io/library/nats", "mirrorSourcePolicy": "Sometimes"},
        {"mirrors": [R]},
        {"source": "docker.io/Library/nats"},
    ):
        bad = {**good, "spec": {"imageDigestMirrors": [bad_rule]}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "spec": {"imageTagMirrors": []}}, SCHEMA)


def test_containerd_is_refused_in_one_line_pointing_to_what_works(tmp_path: Path) -> None:
    line = one_line_error(tmp_path, "--format", "containerd", "--registry-server", R)
    assert line.startswith("Error: --format containerd: hosts.toml ")
    assert "cannot map a repository path to another" in line
    assert "--format k3s" in line and "crio" in line and "openshift" in line


def test_two_repositories_flattened_to_one_are_refused(tmp_path: Path) -> None:
    lock = LOCK + '\n[[images]]\nsource = "ghcr.io/nats-io/nats:2.10"\n'
    line = one_line_error(tmp_path, "--format", "crio", "--registry-server", R, lock=lock)
    assert line == (
        "Error: docker.io/library/nats and ghcr.io/nats-io/nats both map to the repository"
        f" {R}/nats; node mirrors map whole repositories: mirror them to different registry"
        " servers"
    )


def test_podman_pulls_public_names_from_r_through_the_crio_file(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = make_registry("anon")
    pushed = {
        "docker.io/library/nats:2.9-alpine": push(
            registry, "nats", "2.9-alpine", make_image("nats")
        ),
        "gcr.io/spiffe-io/spire-agent:1.5.6": push(
            registry, "spire-agent", "1.5.6", make_image("spire-agent")
        ),
        "docker-registry.nginx.com/nsm/nginx-mesh-sidecar:2.0.0": push(
            registry, "nginx-mesh-sidecar", "2.0.0", make_image("sidecar")
        ),
    }
    conf = tmp_path / "registries.conf"
    result = run_mirror(
        "node-config",
        "--format",
        "crio",
        "--registry-server",
        registry.host,
        "--insecure-registry",
        registry.host,
        "--lock",
        str(REPO_ROOT / "images.lock"),
        "--output",
        str(conf),
    )
    assert result.returncode == 0, result.stderr
    pulls = pull_offline(registry, conf, list(pushed))
    assert pulls.digests == pushed
    for path in ("nats/manifests/2.9-alpine", "spire-agent/manifests/1.5.6"):
        assert f'"GET /v2/{path} ' in pulls.access_log
    assert '"GET /v2/nginx-mesh-sidecar/manifests/2.0.0 ' in pulls.access_log
