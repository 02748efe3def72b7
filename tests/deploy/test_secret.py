"""The registry Secret: the seed's shape, kubectl's bytes, and redaction."""

from __future__ import annotations

import base64
import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.postrender.secret import dockerconfigjson, redact_secret, registry_secret
from mirror.net.credentials import Credentials
from tests.deploy.deploycli import kubectl_secret

KUBECTL = shutil.which("kubectl")


def decoded(secret: dict[str, object]) -> bytes:
    data = secret["data"]
    assert isinstance(data, dict)
    return base64.b64decode(data[".dockerconfigjson"])


def test_secret_has_the_seeds_shape() -> None:
    secret = registry_secret("reg.example:5000", Credentials("u", "p"), "nginx-mesh")
    assert secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["name"] == "nginx-mesh-registry-key"
    assert secret["metadata"]["namespace"] == "nginx-mesh"
    assert secret["metadata"]["labels"] == {
        "usage": "nginx-mesh-registry-key",
        "app.kubernetes.io/part-of": "nginx-service-mesh",
    }
    assert json.loads(decoded(secret)) == {
        "auths": {
            "reg.example:5000": {
                "username": "u",
                "password": "p",
                "auth": base64.b64encode(b"u:p").decode(),
            }
        }
    }


def test_registry_server_is_the_key_exactly_as_given() -> None:
    config = json.loads(dockerconfigjson("reg.example/team/", Credentials("u", "p")))
    assert list(config["auths"]) == ["reg.example/team/"]


def test_gke_key_user_and_file_content() -> None:
    key = '{"type": "service_account", "private_key": "-----BEGIN<&>"}\n'
    config = json.loads(dockerconfigjson("gcr.io", Credentials("_json_key", key)))
    entry = config["auths"]["gcr.io"]
    assert entry["username"] == "_json_key"
    assert entry["password"] == key
    assert base64.b64decode(entry["auth"]).decode() == f"_json_key:{key}"


# kubectl takes its values as command-line arguments: no NUL, and text must round-trip.
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")
@settings(max_examples=25, deadline=None)
@given(
    server=st.sampled_from(["reg.example:5000", "gcr.io/team", "r<&>"]),
    username=_TEXT.filter(lambda u: not u.startswith("-")),
    password=_TEXT,
)
def test_decoded_content_equals_kubectls(server: str, username: str, password: str) -> None:
    ours = decoded(registry_secret(server, Credentials(username, password), "nginx-mesh"))
    assert ours == base64.b64decode(
        kubectl_secret(server, username, password)["data"][".dockerconfigjson"]
    )


def test_redact_secret_hides_every_value_and_leaves_other_kinds() -> None:
    secret = registry_secret("r", Credentials("u", "hunter2"), "nginx-mesh")
    secret["stringData"] = {"extra": "hunter2"}
    shown = redact_secret(secret)
    assert "hunter2" not in json.dumps(shown)
    assert base64.b64encode(b"hunter2").decode() not in json.dumps(shown)
    assert shown["data"] == {".dockerconfigjson": "<redacted>"}
    assert shown["stringData"] == {"extra": "<redacted>"}
    assert secret["stringData"] == {"extra": "hunter2"}  # the original is untouched
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}
    assert redact_secret(config_map) is config_map
