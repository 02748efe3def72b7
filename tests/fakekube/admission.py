"""Validating admission webhooks, as far as the fake can tell without calling them.

A write that a ValidatingWebhookConfiguration's rules match needs the webhook's service to
have a ready endpoint (a ready, running pod its selector picks). Without one, a webhook with
``failurePolicy: Fail`` (the default) fails the write in the real server's words; with one,
the fake admits the write (it never calls the webhook).
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.fakekube.patch import Obj
from tests.fakekube.selectors import label_selector
from tests.fakekube.store import ApiError, ApiType, Store


def check(store: Store, api_type: ApiType, namespace: str, operation: str, obj: Obj) -> None:
    """Raise the real server's 500 if a matching webhook's service has no ready endpoint."""
    if api_type.group == "admissionregistration.k8s.io":
        return  # webhooks never see their own configurations
    error: ApiError | None = None
    with store.changed:
        configurations = store.objects.get(
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations"), {}
        )
        for configuration in configurations.values():
            for webhook in configuration.get("webhooks") or []:
                if not _matches(store, webhook, api_type, namespace, operation, obj):
                    continue
                reason = _unreachable(store, webhook)
                if reason and webhook.get("failurePolicy", "Fail") == "Fail":
                    error = ApiError(
                        500,
                        "InternalError",
                        f'Internal error occurred: failed calling webhook "{webhook["name"]}":'
                        f" failed to call webhook: {reason}",
                    )
                    break
    if error is not None:
        raise error


def _matches(
    store: Store, webhook: Obj, api_type: ApiType, namespace: str, operation: str, obj: Obj
) -> bool:
    rule_matches = any(
        _has(rule.get("apiGroups"), api_type.group)
        and _has(rule.get("apiVersions"), api_type.version)
        and _has(rule.get("operations"), operation)
        and _has(rule.get("resources"), api_type.plural)
        and rule.get("scope", "*") in ("*", "Namespaced" if api_type.namespaced else "Cluster")
        for rule in webhook.get("rules") or []
    )
    if not rule_matches:
        return False
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if not _selects(webhook.get("objectSelector"), labels):
        return False
    if api_type.namespaced:
        found = store.objects.get(("", "namespaces"), {}).get(("", namespace)) or {}
        ns_labels = {
            **((found.get("metadata") or {}).get("labels") or {}),
            "kubernetes.io/metadata.name": namespace,
        }
        return _selects(webhook.get("namespaceSelector"), ns_labels)
    return True


def _has(listed: list[str] | None, value: str) -> bool:
    return "*" in (listed or []) or value in (listed or [])


def _selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return True
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[operator]
        )
    return label_selector(",".join(terms))(labels)


def _unreachable(store: Store, webhook: Obj) -> str | None:
    """Why the webhook's service cannot be called, or None when it has a ready endpoint."""
    service_ref = (webhook.get("clientConfig") or {}).get("service")
    if not service_ref:
        return None  # a URL: taken as reachable
    name, namespace = service_ref["name"], service_ref["namespace"]
    port = service_ref.get("port", 443)
    timeout = webhook.get("timeoutSeconds", 10)
    url = f"https://{name}.{namespace}.svc:{port}{service_ref.get('path', '')}?timeout={timeout}s"
    service = store.objects.get(("", "services"), {}).get((namespace, name))
    if service is None:
        return f'Post "{url}": service "{name}" not found'
    selector = (service.get("spec") or {}).get("selector") or {}
    for (pod_ns, _), pod in store.objects.get(("", "pods"), {}).items():
        labels = pod["metadata"].get("labels") or {}
        picked = selector and all(labels.get(k) == v for k, v in selector.items())
        if pod_ns == namespace and picked and _ready(pod):
            return None
    return f'Post "{url}": no endpoints available for service "{name}"'


def _ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
