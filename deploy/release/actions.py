"""deploy's verbs over the Helm release: apply (install or upgrade), rollback, remove, history.

apply checks, before anything changes, that no object of the chart belongs to someone else;
makes the namespace; applies the chart's ``crds/`` and waits until their kinds are served
(Helm never upgrades them, NSM's upgrade guide asks for it); then runs Helm's install or
upgrade while :class:`RolloutWatch` shows progress and stops Helm as soon as a rollout
cannot finish. A failed upgrade is rolled back to the previous revision, a failed install
uninstalled, as ``nginx-meshctl`` cleans up.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.chart.kubeversion import check_kube_version
from deploy.chart.manifests import parse_documents
from deploy.cluster.cleanup import Removal, claims_of, clean_up
from deploy.cluster.client import Cluster
from deploy.cluster.ownership import foreign_objects, refusal
from deploy.cluster.rollout import ROLLOUT_KINDS, RolloutState, crd_established, custom_kinds
from deploy.cluster.watch import RolloutWatch
from deploy.errors import ClusterError, RolloutFailed
from deploy.labels import CREATED_ANNOTATION, CREATED_BY, LEGACY_RECORD
from deploy.postrender.plan import Plan
from deploy.postrender.policy import API_VERSION as POLICY_API
from deploy.postrender.releasechart import write_release_chart
from deploy.release.helm import Release, Releases

Obj = dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """Where apply reports: the phase, each workload's rollout, hooks and notes."""

    phase: Callable[[str], None] = lambda _: None
    rollout: Callable[[Obj, RolloutState], None] = lambda *_: None
    note: Callable[[str], None] = lambda _: None


QUIET = Progress()


@dataclass(frozen=True)
class Applied:
    """The outcome of apply: the revision now deployed and whether it was an upgrade."""

    revision: int
    upgrade: bool
    release: Release


def _ensure_namespace(
    cluster: Cluster, namespace: str, deadline: float, progress: Progress
) -> None:
    found = cluster.get("v1", "Namespace", namespace)
    if found is not None and found["metadata"].get("deletionTimestamp"):
        progress.note(f"waiting for Namespace {namespace} to finish terminating")
        cluster.wait_deleted({"apiVersion": "v1", "kind": "Namespace", **found}, deadline)
        found = None
    if found is None:
        cluster.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "annotations": {CREATED_ANNOTATION: CREATED_BY},
                },
            }
        )


def _apply_crds(cluster: Cluster, plan: Plan, deadline: float, progress: Progress) -> None:
    """The chart's ``crds/`` applied and Established, and the kinds the chart uses served."""
    if not plan.crds:
        return
    progress.phase(f"CRDs: applying the chart's {len(plan.crds)} CRDs")
    for crd in plan.crds:
        cluster.apply(crd, force=True)
    used = {(o["apiVersion"], o["kind"]) for o in plan.objects}
    for crd in plan.crds:
        cluster.wait_for(crd, crd_established, deadline)
        for api_version, kind in custom_kinds(crd) & used:
            cluster.wait_served(api_version, kind, deadline)


def policy_for(cluster: Cluster, plan: Plan, progress: Progress) -> Plan:
    """``plan`` as this cluster can take its admission policy: without the policy API (before
    Kubernetes 1.30) ``warn`` goes on without it and ``deny`` is refused, nothing sent."""
    mode = plan.settings.enforce_registry
    if mode is None or cluster.serves(POLICY_API, "ValidatingAdmissionPolicy"):
        return plan
    missing = (
        f"the cluster does not serve ValidatingAdmissionPolicy ({POLICY_API}, Kubernetes 1.30+)"
    )
    if mode == "deny":
        raise ClusterError(f"--enforce-registry deny: {missing}; nothing was changed")
    progress.note(f"--enforce-registry warn: {missing}; going on without the policy")
    return plan.without_policy()


def check_ownership(
    cluster: Cluster, releases: Releases, plan: Plan, adopt: bool, progress: Progress
) -> None:
    """Refuse (nothing changed) objects not the release's, unless Helm is to ``adopt`` them."""
    namespace = plan.settings.namespace
    legacy = cluster.get("v1", "ConfigMap", LEGACY_RECORD, namespace)
    if legacy is not None and not adopt:
        raise ClusterError(
            f"{namespace} holds a mesh applied by meshlift before it made Helm releases"
            f" (ConfigMap {namespace}/{LEGACY_RECORD}); adopt it into the release with"
            f" `deploy apply --take-ownership` and the same flags, or run `deploy remove"
            f" --namespace {namespace}` first"
        )
    foreign = foreign_objects(cluster, plan.resources, releases.name, namespace)
    if foreign and not adopt:
        raise refusal(foreign, releases.name)
    if foreign:
        progress.note(f"the release takes ownership of {len(foreign)} object(s)")


def _run_helm(
    cluster: Cluster,
    releases: Releases,
    plan: Plan,
    upgrade: bool,
    timeout: float,
    wait: bool,
    adopt: bool,
    progress: Progress,
) -> Release:
    """Install or upgrade under the watch; RolloutFailed naming the workload on failure."""
    workloads = frozenset(
        (o["kind"], o["metadata"]["name"]) for o in plan.resources if o["kind"] in ROLLOUT_KINDS
    )
    watch = RolloutWatch(
        cluster,
        plan.settings.namespace,
        workloads,
        on_rollout=progress.rollout,
        on_hook=progress.note,
        on_failure=lambda _: releases.cancel(),
    )
    action = releases.upgrade if upgrade else releases.install
    with tempfile.TemporaryDirectory(prefix="meshlift-release-") as scratch:
        chart = write_release_chart(plan, Path(scratch) / "chart")
        progress.phase(f"{'upgrade' if upgrade else 'install'}: Helm is applying the release")
        try:
            with watch:
                return action(chart, dict(plan.values), timeout, wait=wait, adopt=adopt)
        except ClusterError as exc:
            raise RolloutFailed(watch.failure or str(exc)) from None


def apply_release(
    cluster: Cluster,
    releases: Releases,
    plan: Plan,
    *,
    upgrade: bool,
    timeout: float,
    adopt: bool = False,
    wait: bool = True,
    progress: Progress = QUIET,
) -> Applied:
    """Install the release, or ``upgrade`` it (the plan was rendered for one or the other: the
    caller read the release's history); see the module docstring."""
    deadline = time.monotonic() + timeout
    check_kube_version(plan.files.metadata if plan.files else {}, cluster.kube_version())
    plan = policy_for(cluster, plan, progress)
    check_ownership(cluster, releases, plan, adopt, progress)
    _ensure_namespace(cluster, plan.settings.namespace, deadline, progress)
    _apply_crds(cluster, plan, deadline, progress)
    try:
        remaining = max(1.0, deadline - time.monotonic())
        release = _run_helm(cluster, releases, plan, upgrade, remaining, wait, adopt, progress)
    except RolloutFailed:
        if upgrade:
            progress.phase("rollback: the upgrade failed; back to the previous revision")
            releases.rollback(None, timeout)
        elif releases.history():
            progress.phase("uninstall: the install failed; removing it")
            releases.uninstall(timeout)
        raise
    if adopt:
        legacy = cluster.get("v1", "ConfigMap", LEGACY_RECORD, plan.settings.namespace)
        if legacy is not None:
            cluster.delete("v1", "ConfigMap", LEGACY_RECORD, plan.settings.namespace)
    return Applied(int(release.get("revision", 0)), upgrade, release)


def remove_release(
    cluster: Cluster,
    releases: Releases,
    *,
    timeout: float,
    keep_crds: bool = False,
    on_deleted: Callable[[str], None] = lambda _: None,
) -> tuple[bool, Removal]:
    """Helm's uninstall (hooks and ``resource-policy: keep`` as Helm runs them), then remove's
    extras (:func:`deploy.cluster.cleanup.clean_up`). True when there was a release."""
    had = bool(releases.history())
    claims: frozenset[str] = frozenset()
    if had:
        manifest = str(releases.status().get("manifest", ""))
        claims = claims_of(parse_documents(manifest, "the release manifest"))
        releases.uninstall(timeout)
    removal = clean_up(
        cluster, releases.namespace, keep_crds=keep_crds, on_deleted=on_deleted, claims=claims
    )
    return had, removal
