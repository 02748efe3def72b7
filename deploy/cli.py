"""``deploy``: parse options, call one function, render its result, map errors to exit codes."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

from mirror.cli.options import (
    Duration,
    compose_options,
    credentials_from,
    enable_debug,
    exits_on_errors,
    lock_option,
    registry_credential_options,
)
from mirror.errors import MirrorError
from mirror.image.lock import ENVIRONMENTS

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from deploy.cluster import Cluster
    from deploy.plan import Plan
    from deploy.rollout import RolloutState
    from mirror.net.hosts import HostOptions

Obj = dict[str, Any]
_handled = exits_on_errors(MirrorError)
cluster_options = compose_options(
    click.option(
        "--kubeconfig",
        metavar="FILE",
        help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster).",
    ),
    click.option(
        "--context", metavar="NAME", help="Kubeconfig context (default: its current one)."
    ),
)
_MESH_NAMESPACE = click.option(
    "--namespace",
    default="nginx-mesh",
    show_default=True,
    metavar="NS",
    help="The mesh's namespace.",
)
plan_options = compose_options(
    click.option(
        "--registry-server",
        required=True,
        metavar="HOST[:PORT][/PATH]",
        help="The private registry the images come from (and the Secret is for).",
    ),
    registry_credential_options,
    click.option(
        "--disable-public-images",
        is_flag=True,
        help="Take every image from --registry-server, not only the mesh's own.",
    ),
    click.option(
        "--image-tag",
        default="2.0.0",
        show_default=True,
        help="Tag of the NGINX Service Mesh images.",
    ),
    _MESH_NAMESPACE,
    click.option(
        "--environment",
        type=click.Choice(ENVIRONMENTS),
        default="kubernetes",
        show_default=True,
        help="The chart's environment value (openshift adds the SPIFFE CSI driver).",
    ),
    lock_option,
    click.option(
        "--chart",
        metavar="PATH|URL|oci://REF",
        help="The Helm chart to render: directory, .tgz, URL or chart in a registry"
        " (default: the lock's chart, from --registry-server).",
    ),
    click.option(
        "-f",
        "--values",
        "values_files",
        multiple=True,
        metavar="FILE",
        help="Chart values from a YAML file, as helm's -f (repeatable).",
    ),
    click.option(
        "--set",
        "set_values",
        multiple=True,
        metavar="KEY=VAL",
        help="Chart values as helm's --set (repeatable).",
    ),
    click.option(
        "--set-string",
        multiple=True,
        metavar="KEY=VAL",
        help="Chart values kept as strings, as helm's --set-string (repeatable).",
    ),
    click.option(
        "--set-file",
        multiple=True,
        metavar="KEY=PATH",
        help="Chart values read from files, as helm's --set-file (repeatable).",
    ),
    click.option(
        "--manifests",
        "manifest_paths",
        multiple=True,
        metavar="PATH",
        help="Already-rendered YAML instead of a chart: file, directory or - (repeatable).",
    ),
    click.option(
        "--pin-digests/--no-pin-digests",
        default=True,
        show_default=True,
        help="Use images by the digests the lock pins (R/name:tag@sha256:...).",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Print what would be applied (Secret data redacted); send nothing to the cluster.",
    ),
    click.option(
        "--skip-preflight", is_flag=True, help="Do not check that every image is in the registry."
    ),
    click.option(
        "--wait/--no-wait", default=True, show_default=True, help="Wait for the rollouts."
    ),
    click.option(
        "--timeout",
        type=Duration(),
        default="5m",
        show_default=True,
        help="How long to wait for CRDs, hooks and rollouts.",
    ),
    click.option(
        "--insecure-registry",
        "insecure",
        multiple=True,
        metavar="HOST[:PORT]",
        help="Allow plain HTTP or unverified TLS for HOST in preflight (repeatable).",
    ),
    click.option(
        "--ca-file",
        type=click.Path(dir_okay=False),
        help="Extra CA certificate (PEM) to trust in preflight.",
    ),
    cluster_options,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="meshlift")
def cli(debug: bool) -> None:
    """Deploy NGINX Service Mesh from your private registry, and remove it again."""
    if debug:
        enable_debug()


def _hosts(params: dict[str, Any]) -> HostOptions:
    from deploy.errors import InputError
    from mirror.net.hosts import HostOptions, parse_insecure

    ca_file = params["ca_file"]
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        raise InputError(f"--ca-file {ca_file}: file not found or not readable")
    return HostOptions(insecure=parse_insecure(params["insecure"]), ca_file=ca_file)


def _plan(params: dict[str, Any]) -> Plan:
    from deploy.errors import InputError
    from deploy.helm import ValueFlags
    from deploy.plan import Settings, plan_deploy

    if params["registry_password_stdin"] and "-" in params["manifest_paths"]:
        raise InputError("--registry-password-stdin and --manifests - both want standard input")
    credentials = credentials_from(params)
    settings = Settings.parse(
        params["registry_server"],
        credentials,
        params["disable_public_images"],
        params["image_tag"],
        params["namespace"],
        params["environment"],
        params["pin_digests"],
    )
    values = ValueFlags(
        params["values_files"], params["set_values"], params["set_string"], params["set_file"]
    )
    return plan_deploy(
        settings,
        params["lock_path"],
        params["manifest_paths"],
        params["chart"],
        values=values,
        hosts=_hosts(params),
    )


def _preflight(plan: Plan, params: dict[str, Any]) -> None:
    from deploy.preflight import (
        check_images,
        check_signatures,
        registry_lookup,
        registry_signatures,
    )
    from mirror.image.signature import read_key

    keys = tuple(read_key(path) for path in params["verify_keys"])

    hosts = _hosts(params)
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


class _RolloutProgress:
    """Rollouts on stderr: a live rich display on a terminal, else a line per change."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._shown: dict[str, str] = {}

    def __call__(self, obj: Obj, state: RolloutState) -> None:
        from deploy.manifests import describe

        key = describe(obj)
        line = f"{'rolled out' if state.done else 'rolling out'} {key}: {state.detail}"
        if not self._console.is_terminal:
            if self._shown.get(key) != line:
                self._shown[key] = line
                click.echo(line, err=True)
            return
        if self._progress is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), console=self._console
            )
            self._progress.start()
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(line, total=1)
        self._progress.update(self._tasks[key], description=line, completed=state.done)

    def __enter__(self) -> _RolloutProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


def _connect(params: dict[str, Any]) -> Cluster:
    from deploy.cluster import Cluster

    return Cluster.connect(params["kubeconfig"], params["context"])


@cli.command()
@plan_options
@click.option(
    "--verify-key",
    "verify_keys",
    multiple=True,
    metavar="PEM",
    help="Preflight: every image in --registry-server must carry a cosign signature that"
    " verifies under this public key (repeatable: any of them).",
)
@_handled
def apply(**params: Any) -> None:
    """Create the registry Secret and apply the mesh, every image from --registry-server."""
    from deploy.apply import Applied, apply_plan
    from deploy.errors import InputError
    from deploy.manifests import describe

    if params["verify_keys"] and params["skip_preflight"]:
        raise InputError("--verify-key is checked in preflight: drop --skip-preflight")
    plan = _plan(params)
    if not params["skip_preflight"]:
        _preflight(plan, params)
    if params["dry_run"]:
        _print_plan(plan)
        click.echo(
            f"dry run: {len(plan.objects)} objects and {len(plan.hooks)} hooks,"
            " nothing sent to the cluster",
            err=True,
        )
        return

    def show(applied: Applied) -> None:
        click.echo(f"{applied.action:<10} {describe(applied.obj)}")

    with _connect(params) as cluster, _RolloutProgress() as progress:
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


@cli.command()
@plan_options
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="DIR|-",
    help="Write one file per object into DIR (new or empty), or all of them to stdout (-).",
)
@_handled
def render(**params: Any) -> None:
    """Print the exact manifests apply would send (Secret data redacted), and the hooks apart.

    Takes apply's options so one command line can switch verbs; it contacts no cluster, and
    the registry only to pull the lock's chart. On stdout the hooks follow, commented out and
    marked by phase; in DIR they go under ``hooks/``.
    """
    from deploy.errors import InputError
    from deploy.hooks import display_order, first_phase

    plan = _plan(params)
    if params["output"] == "-":
        _print_plan(plan)
        return
    directory = Path(params["output"])
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"--output {directory}: not an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    objects = plan.redacted()
    _write_numbered(directory, objects, "")
    hooks = plan.redacted_hooks()
    if hooks:
        (directory / "hooks").mkdir()
        for hook in display_order(hooks):
            _write_numbered(directory / "hooks", [hook.obj], f"{first_phase(hook)}-")
    click.echo(
        f"wrote {len(objects)} manifests to {directory} and {len(hooks)} hooks to"
        f" {directory / 'hooks'}",
        err=True,
    )


def _write_numbered(directory: Path, objects: list[Obj], prefix: str) -> None:
    from deploy.manifests import dump_documents

    for obj in objects:
        number = len(list(directory.iterdir())) + 1
        name = f"{prefix}{number:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        (directory / name).write_text(dump_documents([obj]), encoding="utf-8")


def _print_plan(plan: Plan) -> None:
    """The objects apply sends, then the hooks commented out (never applied through a pipe)."""
    from deploy.hooks import commented
    from deploy.manifests import dump_documents

    click.echo(dump_documents(plan.redacted()), nl=False)
    hooks = plan.redacted_hooks()
    if hooks:
        click.echo("# Helm hooks: not applied with the objects above; run at their phase.")
        click.echo(commented(hooks), nl=False)


@cli.command()
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Copy the Secret into NS (repeatable).",
)
@click.option(
    "--all-injected",
    is_flag=True,
    help="Also every namespace labelled for injection or running pods with the mesh sidecar.",
)
@click.option("--watch", is_flag=True, help="Keep propagating as namespaces appear, until Ctrl-C.")
@click.option(
    "--mesh-namespace",
    default="nginx-mesh",
    show_default=True,
    metavar="NS",
    help="Where the Secret to copy is.",
)
@cluster_options
@_handled
def propagate(**params: Any) -> None:
    """Copy the registry Secret where injected workloads need it, and use it there."""
    from deploy.errors import InputError
    from deploy.plan import check_namespace
    from deploy.propagate import Propagated, propagate, watch_and_propagate

    if not params["namespaces"] and not params["all_injected"]:
        raise InputError("give --namespace NS (repeatable) or --all-injected")
    mesh_namespace = check_namespace(params["mesh_namespace"], "--mesh-namespace")
    for namespace in params["namespaces"]:
        check_namespace(namespace)
    failed: list[Propagated] = []

    def show(result: Propagated) -> None:
        if result.error:
            failed.append(result)
            click.echo(f"failed     {result.namespace}: {result.error}", err=True)
        else:
            click.echo(
                f"{result.secret:<10} Secret {result.namespace}/nginx-mesh-registry-key;"
                f" default service account: pull secret {result.service_account}"
            )

    with _connect(params) as cluster:
        if params["watch"]:
            stop = threading.Event()
            try:
                watch_and_propagate(
                    cluster,
                    mesh_namespace,
                    params["namespaces"],
                    params["all_injected"],
                    show,
                    stop,
                )
            except KeyboardInterrupt:
                stop.set()
                click.echo("stopped watching", err=True)
            return
        for result in propagate(
            cluster, mesh_namespace, params["namespaces"], params["all_injected"]
        ):
            show(result)
    if failed:
        sys.exit(1)


@cli.command()
@_MESH_NAMESPACE
@click.option(
    "--timeout",
    type=Duration(),
    default="5m",
    show_default=True,
    help="How long to wait for the chart's delete hooks.",
)
@cluster_options
@_handled
def remove(**params: Any) -> None:
    """Delete what apply and propagate made; keep what others made.

    Runs the chart's pre-delete hooks first and its post-delete hooks after the deletion.
    """
    from deploy.plan import check_namespace
    from deploy.remove import remove_mesh

    namespace = check_namespace(params["namespace"])
    with _connect(params) as cluster:
        removal = remove_mesh(
            cluster,
            namespace,
            lambda d: click.echo(f"deleted    {d}"),
            timeout=params["timeout"],
            on_hook=click.echo,
        )
    for cleaned in removal.cleaned:
        click.echo(f"cleaned    {cleaned}")
    for kept in removal.kept:
        click.echo(f"kept       {kept}")
    click.echo(f"removed {len(removal.deleted)} objects")


@cli.command()
@_MESH_NAMESPACE
@cluster_options
@_handled
def status(**params: Any) -> None:
    """Show the mesh's objects, where the Secret is, and images not from the registry.

    Exit 1 when the mesh is not deployed, a workload has not rolled out, or an image does
    not come from the registry.
    """
    from deploy.plan import check_namespace
    from deploy.status import mesh_status

    namespace = check_namespace(params["namespace"])
    with _connect(params) as cluster:
        state = mesh_status(cluster, namespace)
    record = state.record
    if record is None:
        click.echo(f"no mesh deployed by meshlift in {namespace}")
    else:
        public = "disabled" if record.disable_public_images else "enabled"
        click.echo(
            f"mesh in {namespace} from {record.registry_server} (image tag {record.image_tag},"
            f" {record.environment}, public images {public})"
        )
    click.echo(f"objects: {len(state.objects)}")
    for obj in state.objects:
        click.echo(f"  {obj.description}" + (f"  {obj.rollout}" if obj.rollout else ""))
    click.echo(f"registry Secret in: {', '.join(state.secret_namespaces) or 'no namespace'}")
    if state.foreign_images:
        click.echo("images not from the registry:")
        for use in state.foreign_images:
            click.echo(f"  {use.image}  ({use.where}, {use.place})")
    elif record is not None:
        click.echo("images not from the registry: none")
    if not state.healthy:
        sys.exit(1)


def main() -> None:
    """Console entry point."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
