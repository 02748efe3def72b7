"""Loading manifests: files, directories, stdin, helm charts, and their errors."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from deploy.errors import InputError, ManifestError
from deploy.manifests import (
    chart_values,
    dump_documents,
    load_paths,
    parse_documents,
    render_chart,
)

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def test_directory_is_read_recursively_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.yaml").write_text(CONFIG_MAP.format(name="two"))
    (tmp_path / "1.yml").write_text(CONFIG_MAP.format(name="one") + "---\n")
    (tmp_path / "notes.txt").write_text("ignored")
    names = [o["metadata"]["name"] for o in load_paths([str(tmp_path)])]
    assert names == ["one", "two"]


def test_stdin_and_kind_list() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
    )
    assert [o["metadata"]["name"] for o in load_paths(["-"], io.StringIO(text))] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1,\n", "f.yaml: not valid YAML at line 2"),
        ("- 1\n", "f.yaml: document 1: not a Kubernetes object"),
        ("kind: ConfigMap\nmetadata: {name: a}\n", "f.yaml: document 1: missing apiVersion"),
        (
            "apiVersion: v1\nkind: ConfigMap\n",
            "f.yaml: document 1: ConfigMap without metadata.name",
        ),
    ],
)
def test_bad_documents_say_where(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as error:
        parse_documents(text, "f.yaml")
    assert str(error.value).startswith(message)
    assert error.value.exit_code == 2


def test_missing_and_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or directory"):
        load_paths([str(tmp_path / "nope.yaml")])
    with pytest.raises(ManifestError, match=r"no \.yaml, \.yml or \.json files"):
        load_paths([str(tmp_path)])
    (tmp_path / "empty.yaml").write_text("---\n# nothing\n")
    with pytest.raises(ManifestError, match="no Kubernetes objects found"):
        load_paths([str(tmp_path / "empty.yaml")])


def test_dump_round_trips_with_block_strings() -> None:
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a"},
            "data": {"c": "x\ny\n"},
        }
    ]
    text = dump_documents(objects)
    assert "c: |\n    x\n    y\n" in text
    assert parse_documents(text, "dump") == objects


def test_chart_without_helm_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="--chart needs the helm binary, which is not on PATH"):
        render_chart(str(tmp_path), "nginx-mesh", {})


def test_chart_is_rendered_by_helm_template_with_our_values(tmp_path: Path) -> None:
    helm = tmp_path / "helm"
    args_file = tmp_path / "args"
    helm.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {args_file}\n'
        f"printf '{CONFIG_MAP.format(name='from-chart')}'\n"
    )
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    values = chart_values("reg.example:5000", "2.0.0", True, "openshift")
    objects = render_chart(str(tmp_path), "mesh", values, helm=str(helm))
    assert [o["metadata"]["name"] for o in objects] == ["from-chart"]
    assert args_file.read_text().splitlines() == [
        "template",
        "nginx-mesh",
        str(tmp_path),
        "--namespace",
        "mesh",
        "--set",
        "registry.server=reg.example:5000",
        "--set-string",
        "registry.imageTag=2.0.0",
        "--set",
        "registry.disablePublicImages=true",
        "--set",
        "environment=openshift",
    ]


def test_failing_helm_reports_its_last_line(tmp_path: Path) -> None:
    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\necho 'Error: chart not found' >&2\nexit 1\n")
    os.chmod(helm, 0o755)
    with pytest.raises(InputError, match="helm template failed: Error: chart not found"):
        render_chart(str(tmp_path), "mesh", {}, helm=str(helm))
