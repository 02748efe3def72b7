"""Loading rendered manifests: files, directories, stdin, and their errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deploy.chart.manifests import dump_documents, load_paths, parse_documents
from deploy.errors import ManifestError

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
