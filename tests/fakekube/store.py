"""The fake cluster's state: API types, objects, resource versions and the event log.

Everything here is thread-safe behind one condition variable; watchers wait on it.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakekube import workloads
from tests.fakekube.patch import Obj, record_update

Objects = list[Obj]
History = list[tuple[str, Obj]]
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class ApiError(Exception):
    """An error the API answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> Obj:
        """The ``Status`` body of this error."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """404 in the API's words: ``configmaps "x" not found``."""
    what = f"{resource}.{group}" if group else resource
    details = {"name": name, "group": group, "kind": resource}
    return ApiError(404, "NotFound", f'{what} "{name}" not found', details)


@dataclass(frozen=True)
class ApiType:
    """One served resource: group, version, plural and kind, namespaced or not."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    builtin: bool = True
    discoverable_at: float = 0.0  # time.monotonic() from which discovery lists it

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> Obj:
        """This type's entry in an ``APIResourceList``."""
        entry: Obj = {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        return entry


def _t(group: str, plural: str, kind: str, namespaced: bool = True, *short: str) -> ApiType:
    return ApiType(group, "v1", plural, kind, namespaced, short)


BUILTIN_TYPES = (
    _t("", "namespaces", "Namespace", False, "ns"),
    _t("", "pods", "Pod", True, "po"),
    _t("", "services", "Service", True, "svc"),
    _t("", "serviceaccounts", "ServiceAccount", True, "sa"),
    _t("", "secrets", "Secret"),
    _t("", "configmaps", "ConfigMap", True, "cm"),
    _t("", "endpoints", "Endpoints", True, "ep"),
    _t("", "events", "Event", True, "ev"),
    _t("", "persistentvolumeclaims", "PersistentVolumeClaim", True, "pvc"),
    _t("apps", "deployments", "Deployment", True, "deploy"),
    _t("apps", "daemonsets", "DaemonSet", True, "ds"),
    _t("apps", "statefulsets", "StatefulSet", True, "sts"),
    _t("apps", "replicasets", "ReplicaSet", True, "rs"),
    _t("batch", "jobs", "Job"),
    _t("batch", "cronjobs", "CronJob", True, "cj"),
    _t("rbac.authorization.k8s.io", "roles", "Role"),
    _t("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    _t("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", False),
    _t("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", False),
    _t(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        "crd",
    ),
    _t(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
    ),
    _t(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
    ),
    _t(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        False,
    ),
    _t(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        False,
    ),
    _t("storage.k8s.io", "csidrivers", "CSIDriver", False),
    _t("apiregistration.k8s.io", "apiservices", "APIService", False),
    _t("policy", "poddisruptionbudgets", "PodDisruptionBudget", True, "pdb"),
    _t("coordination.k8s.io", "leases", "Lease"),
)


@dataclass(frozen=True)
class Event:
    """One change: the object before (None when added) and after (None when deleted)."""

    rv: int
    group: str
    plural: str
    old: Obj | None
    new: Obj | None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without_meta(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@dataclass
class Store:
    """Objects by (group, plural) then (namespace, name), with a global resource version."""

    workloads_ready: bool = True
    namespace_delay: float = 0.0  # seconds a deleted namespace stays Terminating
    # Controllers to imitate beyond a namespace's defaults: "openshift", "statefulset-pvcs",
    # "events" (see README.md).
    controllers: set[str] = field(default_factory=set)
    # Rollouts that fail: images the kubelet cannot pull (image: its message), with the pod's
    # waiting reason, and workloads (by name) whose Deployment exceeds its progress deadline.
    pull_errors: dict[str, str] = field(default_factory=dict)
    pull_reason: str = "ImagePullBackOff"
    stalled: set[str] = field(default_factory=set)
    # Resources (plurals) whose lists are 403 Forbidden, as RBAC answers a user without "list".
    unlistable: set[str] = field(default_factory=set)
    job_outcomes: dict[str, str] = field(default_factory=dict)
    types: dict[tuple[str, str, str], ApiType] = field(default_factory=dict)
    objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    rv: int = 1
    discovery_delay: float = 0.0  # seconds an Established CRD's kinds stay out of discovery
    # Seconds before a workload controller observes a spec change (observedGeneration lags
    # generation meanwhile), and that a deleted pod stays terminating.
    rollout_delay: float = 0.0
    bookmark_interval: float = 1.0  # seconds of quiet after which a watch gets a bookmark
    compacted: int = 0  # watches from an older resourceVersion get 410 Gone
    compactions: int = 0
    closed: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        for api_type in BUILTIN_TYPES:
            self.types[(api_type.group, api_type.version, api_type.plural)] = api_type

    # --- types ----------------------------------------------------------------------------------

    def find_type(self, group: str, version: str, plural: str) -> ApiType | None:
        return self.types.get((group, version, plural))

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions of each named group (the core group excluded)."""
        groups: dict[str, list[str]] = {}
        for api_type in self.served_types():
            if api_type.group and api_type.version not in groups.setdefault(api_type.group, []):
                groups[api_type.group].append(api_type.version)
        return groups

    def types_in(self, group: str, version: str) -> list[ApiType]:
        return [t for t in self.served_types() if (t.group, t.version) == (group, version)]

    def crd_of(self, api_type: ApiType) -> Obj | None:
        """The CustomResourceDefinition that serves a custom kind."""
        with self.changed:
            crds = self.objects.get(("apiextensions.k8s.io", "customresourcedefinitions"), {})
            return crds.get(("", f"{api_type.plural}.{api_type.group}"))

    def served_types(self) -> list[ApiType]:
        """The types discovery lists now."""
        now = time.monotonic()
        return [t for t in self.types.values() if t.discoverable_at <= now]

    def type_of(self, obj: Obj) -> ApiType | None:
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        for api_type in self.types.values():
            if (api_type.group, api_type.version, api_type.kind) == (
                group,
                version,
                obj.get("kind"),
            ):
                return api_type
        return None

    # --- reads ----------------------------------------------------------------------------------

    def get(self, api_type: ApiType, namespace: str, name: str) -> Obj:
        with self.changed:
            obj = self.objects.get((api_type.group, api_type.plural), {}).get((namespace, name))
            if obj is None:
                raise not_found(api_type.plural, name, api_type.group)
            return self._present(api_type, obj)

    def list(
        self, api_type: ApiType, namespace: str | None, match: Callable[[Obj], bool]
    ) -> tuple[int, list[Obj]]:
        with self.changed:
            items = [
                self._present(api_type, obj)
                for (ns, _), obj in sorted(
                    self.objects.get((api_type.group, api_type.plural), {}).items()
                )
                if (namespace is None or ns == namespace) and match(obj)
            ]
            return self.rv, items

    def _present(self, api_type: ApiType, obj: Obj) -> Obj:
        shown = copy.deepcopy(obj)
        shown["apiVersion"] = api_type.api_version
        return shown

    # --- writes ---------------------------------------------------------------------------------

    def _require_namespace(self, api_type: ApiType, namespace: str, name: str) -> None:
        if not api_type.namespaced:
            return
        found = self.objects.get(("", "namespaces"), {}).get(("", namespace))
        if found is None:
            raise not_found("namespaces", namespace)
        if found["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{api_type.plural} "{name}" is forbidden: unable to create new content in'
                f" namespace {namespace} because it is being terminated",
                {"name": name, "group": api_type.group, "kind": api_type.plural},
            )

    def create(self, api_type: ApiType, namespace: str, obj: Obj, manager: str | None) -> Obj:
        """Create ``obj``; ``manager`` owns its fields (None: ``obj`` has its managedFields)."""
        with self.changed:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
            name = meta.get("name")
            self._require_namespace(api_type, namespace, str(name))
            if not name:
                raise ApiError(
                    422, "Invalid", f"{api_type.kind} is invalid: metadata.name: Required value"
                )
            bucket = self.objects.setdefault((api_type.group, api_type.plural), {})
            if (namespace, name) in bucket:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{api_type.plural} "{name}" already exists',
                    {"name": name, "group": api_type.group, "kind": api_type.plural},
                )
            if api_type.namespaced:
                meta["namespace"] = namespace
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            if manager is not None:
                record_update(None, obj, manager)
            return self._write(api_type, None, obj)

    def update(
        self, api_type: ApiType, namespace: str, name: str, obj: Obj, manager: str | None
    ) -> Obj:
        """Replace an object; a stale ``resourceVersion`` in ``obj`` is a 409 Conflict.

        ``manager`` takes the fields the write changes; None: ``obj`` has its managedFields.
        """
        with self.changed:
            old = self.objects.get((api_type.group, api_type.plural), {}).get((namespace, name))
            if old is None:
                raise not_found(api_type.plural, name, api_type.group)
            wanted = obj.get("metadata", {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {api_type.plural} "{name}": the object has'
                    " been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": api_type.group, "kind": api_type.plural},
                )
            meta = obj.setdefault("metadata", {})
            for key in ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "name"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
            if "status" not in obj and "status" in old:
                obj["status"] = old["status"]
            if api_type.builtin and api_type.kind == "Job":
                template = obj.get("spec", {}).get("template")
                if template != old.get("spec", {}).get("template"):
                    raise ApiError(
                        422,
                        "Invalid",
                        f'Job.batch "{name}" is invalid: spec.template: Invalid value: field is'
                        " immutable",
                        {"name": name, "group": api_type.group, "kind": "Job"},
                    )
            if manager is not None:
                record_update(old, obj, manager)
            changed_spec = _without_meta(obj) != _without_meta(old)
            meta["generation"] = old["metadata"].get("generation", 1) + int(changed_spec)
            comparable = {
                **obj,
                "metadata": {**meta, "resourceVersion": old["metadata"]["resourceVersion"]},
            }
            if comparable == old:
                return self._present(api_type, old)
            return self._write(api_type, old, obj)

    def delete(self, api_type: ApiType, namespace: str, name: str) -> Obj:
        with self.changed:
            bucket = self.objects.get((api_type.group, api_type.plural), {})
            old = bucket.get((namespace, name))
            if old is None:
                raise not_found(api_type.plural, name, api_type.group)
            if api_type.kind == "Namespace":
                return self._terminate(old)
            if api_type.kind == "CustomResourceDefinition":
                self._unregister(old)
            if api_type.builtin and api_type.kind in workloads.KINDS:
                workloads.collect(self, old)
            self._remove(api_type.group, api_type.plural, (namespace, name))
            return old

    def _terminate(self, namespace: Obj) -> Obj:
        """Mark a namespace Terminating; its contents and then it go after ``namespace_delay``."""
        meta = namespace["metadata"]
        if meta.get("deletionTimestamp"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on namespaces "{meta["name"]}": The system is'
                " ensuring all content is removed from this namespace.  Upon completion, this"
                " namespace will automatically be purged by the system.",
                {"name": meta["name"], "kind": "namespaces"},
            )
        old = copy.deepcopy(namespace)
        meta["deletionTimestamp"] = _now()
        namespace["status"] = {"phase": "Terminating"}
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.events.append(Event(self.rv, "", "namespaces", old, copy.deepcopy(namespace)))
        self.changed.notify_all()
        if self.namespace_delay <= 0:
            self._purge(meta["name"])
        else:
            timer = threading.Timer(self.namespace_delay, self._purge, (meta["name"],))
            timer.daemon = True
            timer.start()
        return namespace

    def _purge(self, name: str) -> None:
        """The namespace controller at the end: delete the contents, then the namespace."""
        with self.changed:
            if self.closed or ("", name) not in self.objects.get(("", "namespaces"), {}):
                return
            for (group, plural), objs in list(self.objects.items()):
                inner = self.find_any_type(group, plural)
                for key in [k for k in objs if k[0] == name and inner and inner.namespaced]:
                    self._remove(group, plural, key)
            self._remove("", "namespaces", ("", name))

    def find_any_type(self, group: str, plural: str) -> ApiType | None:
        return next(
            (t for t in self.types.values() if (t.group, t.plural) == (group, plural)), None
        )

    def _remove(self, group: str, plural: str, key: tuple[str, str]) -> None:
        old = self.objects[(group, plural)].pop(key)
        self.rv += 1
        self.events.append(Event(self.rv, group, plural, old, None))
        self.changed.notify_all()

    def _write(self, api_type: ApiType, old: Obj | None, obj: Obj) -> Obj:
        self.rv += 1
        obj["apiVersion"], obj["kind"] = api_type.api_version, api_type.kind
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._react(api_type, old, obj)
        namespace = obj["metadata"].get("namespace", "") if api_type.namespaced else ""
        stored = copy.deepcopy(obj)
        self.objects.setdefault((api_type.group, api_type.plural), {})[
            (namespace, obj["metadata"]["name"])
        ] = stored
        self.events.append(Event(self.rv, api_type.group, api_type.plural, old, stored))
        self.changed.notify_all()
        shown = self._present(api_type, stored)
        if api_type.builtin:
            self._control(api_type.kind, old, stored)
        return shown

    # --- what controllers would do ----------------------------------------------------------

    def _react(self, api_type: ApiType, old: Obj | None, obj: Obj) -> None:
        kind = api_type.kind if api_type.builtin else ""
        if kind == "Namespace":
            obj["status"] = {
                "phase": "Terminating" if obj["metadata"].get("deletionTimestamp") else "Active"
            }
        elif kind == "CustomResourceDefinition":
            self._register(obj)
        elif kind == "Job":
            outcome = self.job_outcomes.get(obj["metadata"]["name"], "Complete")
            obj["status"] = copy.deepcopy(_JOB_STATUS[outcome])
        elif kind in workloads.KINDS:
            workloads.react(self, kind, old, obj)

    def make(self, kind: str, namespace: str, obj: Obj, manager: str) -> Obj:
        """Create a built-in object as controller ``manager`` does."""
        return self.create(_builtin(kind), namespace, obj, manager)

    def _control(self, kind: str, old: Obj | None, obj: Obj) -> None:
        """Add what controllers add after a write: a namespace's defaults, and per switch."""
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        if old is None and kind == "Namespace":
            self._namespace_defaults(meta["name"])
        if old is None and kind == "ServiceAccount" and "openshift" in self.controllers:
            self._dockercfg(obj)
        if kind in workloads.KINDS:
            workloads.reconcile(self, kind, obj)
        if kind == "StatefulSet" and "statefulset-pvcs" in self.controllers:
            self._claims(obj)
        if old is None and kind in _EVENTFUL and "events" in self.controllers:
            event = {
                "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}"},
                "involvedObject": {"kind": kind, "name": meta["name"], "uid": meta["uid"]},
                "reason": "SuccessfulCreate",
                "type": "Normal",
            }
            self.make("Event", namespace, event, "kube-controller-manager")

    def _namespace_defaults(self, namespace: str) -> None:
        manager = "kube-controller-manager"
        self.make("ServiceAccount", namespace, {"metadata": {"name": "default"}}, manager)
        ca = {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "fake"}}
        self.make("ConfigMap", namespace, ca, manager)
        if "openshift" not in self.controllers:
            return
        manager = "openshift-controller-manager"
        for name in ("builder", "deployer"):
            self.make("ServiceAccount", namespace, {"metadata": {"name": name}}, manager)
        service_ca = {"metadata": {"name": "openshift-service-ca.crt"}, "data": {"ca": "fake"}}
        self.make("ConfigMap", namespace, service_ca, manager)
        for name in ("system:image-pullers", "system:image-builders", "system:deployers"):
            self.make("RoleBinding", namespace, {"metadata": {"name": name}}, manager)

    def _dockercfg(self, account: Obj) -> None:
        """OpenShift: a pull Secret per ServiceAccount, owned by it and in its pull secrets."""
        meta = account["metadata"]
        name = f"{meta['name']}-dockercfg-{uuid.uuid4().hex[:5]}"
        owner = {"apiVersion": "v1", "kind": "ServiceAccount", "name": meta["name"]}
        secret = {
            "metadata": {
                "name": name,
                "annotations": {"kubernetes.io/service-account.name": meta["name"]},
                "ownerReferences": [{**owner, "uid": meta["uid"], "controller": True}],
            },
            "type": "kubernetes.io/dockercfg",
            "data": {".dockercfg": "e30="},
        }
        manager = "openshift-controller-manager"
        self.make("Secret", meta["namespace"], secret, manager)
        changed = copy.deepcopy(account)
        for key in ("imagePullSecrets", "secrets"):
            changed[key] = [*(changed.get(key) or []), {"name": name}]
        api_type = _builtin("ServiceAccount")
        self.update(api_type, meta["namespace"], meta["name"], changed, manager)

    def _claims(self, statefulset: Obj) -> None:
        """A StatefulSet's claims, one per template and replica.

        Owned by it only when its retention policy deletes them with it (the default keeps
        them, without an owner).
        """
        meta, spec = statefulset["metadata"], statefulset.get("spec") or {}
        policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        owners = []
        if policy.get("whenDeleted") == "Delete":
            ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": meta["name"]}
            owners = [{**ref, "uid": meta["uid"], "controller": True}]
        labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
        claims = self.objects.get(("", "persistentvolumeclaims"), {})
        for template in spec.get("volumeClaimTemplates") or []:
            for ordinal in range(spec.get("replicas", 1)):
                name = f"{template['metadata']['name']}-{meta['name']}-{ordinal}"
                if (meta["namespace"], name) in claims:
                    continue
                claim_meta = {"name": name, "labels": labels, "ownerReferences": owners}
                claim = {"metadata": claim_meta, "spec": template.get("spec") or {}}
                self.make(
                    "PersistentVolumeClaim", meta["namespace"], claim, "kube-controller-manager"
                )

    def _register(self, crd: Obj) -> None:
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            if version.get("served", True):
                known = self.types.get((spec["group"], version["name"], names["plural"]))
                api_type = ApiType(
                    spec["group"],
                    version["name"],
                    names["plural"],
                    names["kind"],
                    spec.get("scope") == "Namespaced",
                    tuple(names.get("shortNames", ())),
                    builtin=False,
                    discoverable_at=known.discoverable_at
                    if known
                    else time.monotonic() + self.discovery_delay,
                )
                self.types[(api_type.group, api_type.version, api_type.plural)] = api_type
        crd["status"] = {
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
            ],
        }

    def _unregister(self, crd: Obj) -> None:
        spec = crd.get("spec", {})
        plural = spec.get("names", {}).get("plural")
        for object_key in list(self.objects.get((spec.get("group"), plural), {})):
            self._remove(spec["group"], plural, object_key)
        served = (spec.get("group"), plural)
        for type_key in [k for k, t in self.types.items() if (t.group, t.plural) == served]:
            del self.types[type_key]

    def set_workloads_ready(self, ready: bool) -> None:
        """Make every workload report ready (or not) from now on, as a controller would."""
        with self.changed:
            self.workloads_ready = ready
            for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
                api_type = _builtin(kind)
                for obj in list(self.objects.get((api_type.group, api_type.plural), {}).values()):
                    self.modify(
                        obj, functools.partial(workloads.set_status, self, kind, ready=ready)
                    )
                    workloads.reconcile(self, kind, obj)
            for pod in list(self.objects.get(("", "pods"), {}).values()):
                self.modify(pod, lambda o: workloads.set_pod_ready(o.get("status") or {}, ready))

    # --- for the controllers of workloads.py ----------------------------------------------------

    def stored(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The stored built-in object itself (not a copy), if any; call with the lock held."""
        api_type = _builtin(kind)
        return self.objects.get((api_type.group, api_type.plural), {}).get((namespace, name))

    def owned_by(self, kind: str, namespace: str, uid: str) -> Objects:
        """Stored built-in objects in ``namespace`` with an owner reference to ``uid``."""
        api_type = _builtin(kind)
        return [
            obj
            for (ns, _), obj in sorted(
                self.objects.get((api_type.group, api_type.plural), {}).items()
            )
            if ns == namespace
            and any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    def replace(self, kind: str, namespace: str, name: str, obj: Obj, manager: str) -> Obj:
        """Update a built-in object as controller ``manager`` does."""
        return self.update(_builtin(kind), namespace, name, obj, manager)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        """Delete a built-in object at once (garbage collection)."""
        api_type = _builtin(kind)
        if (namespace, name) in self.objects.get((api_type.group, api_type.plural), {}):
            self._remove(api_type.group, api_type.plural, (namespace, name))

    def modify(self, obj: Obj, change: Callable[[Obj], None]) -> None:
        """Change a stored object in place, as a controller's status update, with its event."""
        old = copy.deepcopy(obj)
        change(obj)
        if obj == old:
            return
        api_type = self.type_of(obj)
        assert api_type is not None
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append(Event(self.rv, api_type.group, api_type.plural, old, copy.deepcopy(obj)))
        self.changed.notify_all()

    def terminate_pod(self, pod: Obj) -> None:
        """Graceful deletion: ``deletionTimestamp`` now, gone ``rollout_delay`` seconds later."""
        meta = pod["metadata"]
        self.modify(pod, lambda o: o["metadata"].update(deletionTimestamp=_now()))
        self.later(self.rollout_delay, self.remove, "Pod", meta["namespace"], meta["name"])

    def later(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        """Run ``action(*args)`` with the lock held, ``delay`` seconds from now (0: at once)."""
        if delay <= 0:
            action(*args)
            return

        def run() -> None:
            with self.changed:
                if not self.closed:
                    action(*args)

        timer = threading.Timer(delay, run)
        timer.daemon = True
        timer.start()

    def set_job_outcome(self, name: str, outcome: str) -> None:
        """Jobs named ``name`` created from now on end ``Failed`` or stay ``Running``.

        ``Complete`` (the default for every Job) makes them succeed again.
        """
        assert outcome in _JOB_STATUS, outcome
        with self.changed:
            self.job_outcomes[name] = outcome

    def history(self, kind: str) -> History:
        """Every ``ADDED`` and ``DELETED`` of ``kind`` so far, in order, with the object."""
        found: History = []
        with self.changed:
            for event in self.events:
                obj = event.new or event.old
                if obj is None or obj.get("kind") != kind or (event.old and event.new):
                    continue
                found.append(("ADDED" if event.old is None else "DELETED", copy.deepcopy(obj)))
        return found

    # --- watch ----------------------------------------------------------------------------------

    def events_after(
        self, rv: int, deadline: float, heartbeat: float | None = None
    ) -> Iterator[Event | int]:
        """Events newer than ``rv`` as they happen, until ``deadline`` or the store closes.

        With a ``heartbeat`` (seconds), a quiet spell that long yields the current resource
        version instead (for a bookmark): every event up to it has been yielded.
        410 Gone (an ApiError) when ``rv`` is older than the last compaction, or when
        :meth:`compact` happens meanwhile.
        """
        seen = rv
        with self.changed:
            compactions = self.compactions
        while True:
            bookmark: int | None = None
            with self.changed:
                quiet_until = deadline if heartbeat is None else time.monotonic() + heartbeat
                pending = [e for e in self.events if e.rv > seen]
                while (
                    not pending
                    and not self._expired(seen, compactions)
                    and not self.closed
                    and time.monotonic() < min(deadline, quiet_until)
                ):
                    self.changed.wait(min(min(deadline, quiet_until) - time.monotonic(), 0.5))
                    pending = [e for e in self.events if e.rv > seen]
                if self._expired(seen, compactions):
                    raise ApiError(
                        410,
                        "Expired",
                        f"too old resource version: {seen} ({self.compacted})",
                    )
                if not pending:
                    if self.closed or time.monotonic() >= deadline:
                        return
                    bookmark = seen = self.rv
            if bookmark is not None:
                yield bookmark
            for event in pending:
                seen = event.rv
                yield event

    def _expired(self, seen: int, compactions: int) -> bool:
        return self.compactions != compactions or seen < self.compacted

    def compact(self) -> None:
        """Forget the event history, as etcd's compaction does.

        Every open watch ends with 410 Gone, and a watch from an older ``resourceVersion``
        starts with it.
        """
        with self.changed:
            self.compacted = self.rv
            self.compactions += 1
            self.events.clear()
            self.changed.notify_all()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


_EVENTFUL = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"})
_JOB_STATUS: dict[str, Obj] = {
    "Complete": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    "Failed": {
        "failed": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ],
    },
    "Running": {"active": 1},
}


def _builtin(kind: str) -> ApiType:
    return next(t for t in BUILTIN_TYPES if t.kind == kind)
