"""What a real API server sends a mutating webhook, and what it does with the answer.

A pod reaches the webhooks after the API server's defaulting and its built-in mutating
admission plugins have run. The ones that shape every pod are reproduced here:

- defaulting of the pod and of every container (``restartPolicy``, ``dnsPolicy``,
  ``schedulerName``, ``terminationGracePeriodSeconds``, ``securityContext: {}``,
  ``terminationMessagePath``/``Policy``, ``imagePullPolicy`` from the tag, port
  protocols, probe timings, requests defaulted from limits, volume ``defaultMode``);
- the ServiceAccount plugin: ``serviceAccountName``, and, unless the pod opts out, the
  projected ``kube-api-access-xxxxx`` volume mounted into every container;
- DefaultTolerationSeconds and Priority: the not-ready/unreachable tolerations and
  ``priority: 0``.

The pod of a controller has ``generateName`` and no ``name`` or ``uid`` yet: the name is
generated after admission. :func:`admission_chain` plays the API server's side of
mutating admission: our webhook, later webhooks, and one reinvocation of ours when a
later one changed the pod (``reinvocationPolicy: IfNeeded``).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import jsonpatch

__all__ = ["admission_chain", "admission_review", "as_admitted", "default_container"]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}


def default_container(container: dict[str, Any]) -> dict[str, Any]:
    """A container as the API server's defaulting leaves it."""
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    container.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    for name, limit in (resources.get("limits") or {}).items():
        resources.setdefault("requests", {}).setdefault(name, limit)
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in container:
            for key, value in _PROBE_DEFAULTS.items():
                container[probe].setdefault(key, value)
            if "httpGet" in container[probe]:
                container[probe]["httpGet"].setdefault("scheme", "HTTP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    return container


def as_admitted(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` as the API server hands it to the mutating webhooks (a copy)."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    defaults = {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
    }
    for key, value in defaults.items():
        spec.setdefault(key, value)
    spec.setdefault("tolerations", []).extend(
        {
            "key": f"node.kubernetes.io/{taint}",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
        for taint in ("not-ready", "unreachable")
    )
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    for volume in spec.get("volumes") or []:
        for kind in ("configMap", "secret", "projected"):
            if kind in volume:
                volume[kind].setdefault("defaultMode", 420)
    containers = [*(spec.get("initContainers") or []), *spec["containers"]]
    for container in containers:
        default_container(container)
    if spec.get("automountServiceAccountToken") is not False:
        _mount_service_account_token(spec, containers)
    return pod


def _mount_service_account_token(spec: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    name = "kube-api-access-" + "".join(
        secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
    )
    spec.setdefault("volumes", []).append(
        {
            "name": name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {
                                        "apiVersion": "v1",
                                        "fieldPath": "metadata.namespace",
                                    },
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    for container in containers:
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == SA_DIR for m in mounts):
            mounts.append({"name": name, "readOnly": True, "mountPath": SA_DIR})


def admission_review(pod: dict[str, Any], *, reinvocation: bool = False) -> dict[str, Any]:
    """The ``admission.k8s.io/v1`` AdmissionReview of a pod CREATE, as the API server sends it."""
    metadata = pod["metadata"]
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": metadata["namespace"],
        "userInfo": {
            "username": "system:serviceaccount:kube-system:replicaset-controller",
            "uid": str(uuid.uuid4()),
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
                "system:authenticated",
            ],
        },
        "object": pod,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if metadata.get("name"):
        request["name"] = metadata["name"]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


Webhook = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def apply_response(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The pod after a webhook's answer (a refusal raises ``AssertionError`` with its message)."""
    assert response.get("allowed"), (response.get("status") or {}).get("message")
    if "patch" not in response:
        return pod
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(pod), patch)
    return patched


async def admission_chain(
    ours: Webhook,
    pod: dict[str, Any],
    later: Sequence[Callable[[dict[str, Any]], dict[str, Any]]] = (),
) -> tuple[dict[str, Any], int]:
    """Mutating admission as the API server runs it; the final pod and how often ours ran.

    ``ours`` (reinvocationPolicy IfNeeded) runs first, then each ``later`` webhook (a
    function returning the changed pod); if any of them changed the pod, ours runs once
    more on the result, as the API server does.
    """
    current = apply_response(pod, await ours(pod))
    calls = 1
    before_later = copy.deepcopy(current)
    for webhook in later:
        current = webhook(copy.deepcopy(current))
    if current != before_later:
        current = apply_response(current, await ours(current))
        calls += 1
    return current, calls
