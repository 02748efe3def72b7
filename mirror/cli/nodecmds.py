"""``mirror node-config``: node mirror configuration for CRI-O, k3s or OpenShift from the lock."""

from __future__ import annotations

from typing import Any

import click

from mirror.cli.options import (
    insecure_registry_option,
    lock_options,
    output_path_option,
    registry_server_option,
)
from mirror.cli.params import lock_entries


@click.command("node-config")
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["crio", "k3s", "openshift", "containerd"]),
    help="crio: containers-registries.conf (CRI-O, Podman); k3s: registries.yaml (k3s, RKE2);"
    " openshift: ImageDigestMirrorSet and ImageTagMirrorSet.",
)
@registry_server_option()
@lock_options
@insecure_registry_option
@output_path_option("FILE", "Write the configuration here (default: standard output).", False)
def node_config_command(**params: Any) -> None:
    """Write node configuration so that nodes pull each locked repository from its copy in
    --registry-server, for workloads nobody rewrote (any chart naming docker.io/library/nats)."""
    from pathlib import Path

    from mirror.errors import InputError
    from mirror.image.reference import parse_registry_server
    from mirror.net.hosts import parse_insecure
    from mirror.nodeconfig import node_config

    server = parse_registry_server(params["registry_server"])
    entries, _ = lock_entries(params["lock_path"], params["environment"])
    text = node_config(params["fmt"], entries, server, parse_insecure(params["insecure"]))
    output = params["output_path"]
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--output {output}: {exc.strerror}") from None
    click.echo(f"{output}: {params['fmt']} mirrors of {len(entries)} locked images", err=True)
