"""``deploy apply``: preflight, then the plan sent to the cluster with hooks and rollouts shown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from deploy.cli.options import connect, handled, hosts_from, plan_from, plan_options
from deploy.cli.progress import RolloutProgress
from deploy.cli.render import print_plan

if TYPE_CHECKING:
    from deploy.plan import Plan


def _preflight(plan: Plan, params: dict[str, Any]) -> None:
    from deploy.preflight import (
        check_images,
        check_signatures,
        registry_lookup,
        registry_signatures,
    )
    from mirror.image.signature import read_key

    keys = tuple(read_key(path) for path in params["verify_keys"])

    hosts = hosts_from(params)
    settings = plan.settings
    with registry_lookup(settings.server, settings.credentials, hosts) as exists:
        check_images(plan.pull_images(), exists, settings.server)
    ours = [i for i in plan.pull_images() if i.registry == settings.server.host]
    if keys:
        with registry_signatures(settings.server, settings.credentials, hosts, keys) as why:
            check_signatures(ours, why, settings.server)
    click.echo(
        f"preflight: all {len(plan.pull_images())} images are in {settings.server}", err=True
    )
    if keys:
        click.echo(f"preflight: all {len(ours)} images in {settings.server} are signed", err=True)


@click.command()
@plan_options
@click.option(
    "--verify-key",
    "verify_keys",
    multiple=True,
    metavar="PEM",
    help="Preflight: every image in --registry-server must carry a cosign signature that"
    " verifies under this public key (repeatable: any of them).",
)
@handled
def apply(**params: Any) -> None:
    """Create the registry Secret and apply the mesh, every image from --registry-server."""
    from deploy.apply import Applied, apply_plan
    from deploy.errors import InputError
    from deploy.manifests import describe

    if params["verify_keys"] and params["skip_preflight"]:
        raise InputError("--verify-key is checked in preflight: drop --skip-preflight")
    plan = plan_from(params)
    if not params["skip_preflight"]:
        _preflight(plan, params)
    if params["dry_run"]:
        print_plan(plan)
        click.echo(
            f"dry run: {len(plan.objects)} objects and {len(plan.hooks)} hooks,"
            " nothing sent to the cluster",
            err=True,
        )
        return

    def show(applied: Applied) -> None:
        click.echo(f"{applied.action:<10} {describe(applied.obj)}")

    with connect(params) as cluster, RolloutProgress() as progress:
        done = apply_plan(
            cluster,
            plan,
            wait=params["wait"],
            timeout=params["timeout"],
            on_applied=show,
            on_rollout=progress,
            on_note=lambda note: click.echo(note, err=True),
            on_hook=click.echo,
        )
    counts = {
        a: sum(1 for d in done if d.action == a)
        for a in ("created", "configured", "replaced", "unchanged")
    }
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    rolled = " and rolled out" if params["wait"] else ""
    click.echo(
        f"NGINX Service Mesh applied{rolled} in {plan.settings.namespace} from"
        f" {plan.settings.server}: {len(done)} objects ({summary})"
    )
