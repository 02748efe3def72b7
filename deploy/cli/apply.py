"""``deploy apply``: install or upgrade the Helm release, every image from the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from deploy.cli.options import (
    connect,
    handled,
    hosts_from,
    plan_from,
    plan_options,
    releases_from,
    settings_from,
    timeout_option,
    wait_option,
)
from deploy.cli.progress import ReleaseProgress
from deploy.cli.render import print_plan

if TYPE_CHECKING:
    from deploy.chart.settings import Settings
    from deploy.postrender.plan import Plan


def _preflight(plan: Plan, params: dict[str, Any]) -> None:
    from deploy.release.preflight import (
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
        signatures = registry_signatures(
            settings.server, settings.credentials, hosts, keys, plan.signed
        )
        with signatures as why:
            check_signatures(ours, why, settings.server)
    click.echo(
        f"preflight: all {len(plan.pull_images())} images are in {settings.server}", err=True
    )
    if keys:
        click.echo(f"preflight: all {len(ours)} images in {settings.server} are signed", err=True)


def _kept_credentials(settings: Settings, stored: dict[str, Any]) -> Settings:
    """An upgrade without credential flags keeps the release's, as nginx-meshctl upgrade."""
    import dataclasses

    from mirror.net.credentials import GKE_KEY_USERNAME, Credentials

    registry = stored.get("registry") or {}
    if settings.credentials is not None:
        return settings
    if registry.get("key"):
        kept = Credentials(GKE_KEY_USERNAME, str(registry["key"]))
    elif registry.get("username") and registry.get("password"):
        kept = Credentials(str(registry["username"]), str(registry["password"]))
    else:
        return settings
    return dataclasses.replace(settings, credentials=kept)


@click.command()
@plan_options
@wait_option
@timeout_option
@click.option(
    "--verify-key",
    "verify_keys",
    multiple=True,
    metavar="PEM",
    help="Preflight: every image in --registry-server must carry a cosign signature that"
    " verifies under this public key (repeatable: any of them).",
)
@click.option(
    "--reset-values",
    is_flag=True,
    help="On upgrade, start from the chart's defaults instead of the release's values.",
)
@click.option(
    "--take-ownership",
    is_flag=True,
    help="Adopt objects of the chart that exist outside the release (as helm's flag).",
)
@handled
def apply(**params: Any) -> None:
    """Install NGINX Service Mesh as the Helm release nginx-service-mesh, or upgrade it.

    The chart's output is post-rendered (images from --registry-server, the labelled pull
    Secret) and stored as the release, so helm list/history/rollback and nginx-meshctl see
    it. A failed upgrade is rolled back, a failed install uninstalled.
    """
    from deploy.errors import InputError
    from deploy.release.actions import Progress, apply_release

    if params["verify_keys"] and params["skip_preflight"]:
        raise InputError("--verify-key is checked in preflight: drop --skip-preflight")
    settings = settings_from(params)
    with connect(params) as cluster, releases_from(params, settings.namespace) as releases:
        upgrade = bool(releases.history())
        base = None
        if upgrade and not params["reset_values"]:
            base = releases.user_values()
            settings = _kept_credentials(settings, base)
        plan = plan_from(params, settings, base=base, config=releases.config, upgrade=upgrade)
        if not params["skip_preflight"]:
            _preflight(plan, params)
        if params["dry_run"]:
            print_plan(plan)
            verb = "upgrade" if upgrade else "install"
            click.echo(
                f"dry run: {verb} of {len(plan.resources)} objects and {len(plan.hooks)} hooks,"
                " nothing sent to the cluster",
                err=True,
            )
            return
        with ReleaseProgress() as progress:
            applied = apply_release(
                cluster,
                releases,
                plan,
                upgrade=upgrade,
                timeout=params["timeout"],
                adopt=params["take_ownership"],
                wait=params["wait"],
                progress=Progress(progress.phase, progress.rollout, progress.note),
            )
    verb = "upgraded" if applied.upgrade else "installed"
    click.echo(
        f"NGINX Service Mesh {verb}: Helm release {releases.name} revision {applied.revision}"
        f" in {settings.namespace}, every image from {settings.server}"
    )
