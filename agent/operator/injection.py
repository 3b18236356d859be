"""What the mutating webhook does to an opted-in pod, as a pure function.

Opt-in is the pod *label* ``captchakeys.io/inject: "true"``: the webhook's
objectSelector matches it, so pods that did not opt in never reach the webhook and an
outage of the operator can only affect pods that asked for a key. The binding and the
options are annotations.

The key agent becomes a *native sidecar* (an init container with ``restartPolicy:
Always``, Kubernetes ≥ 1.29): it starts before the application, its startup probe
holds the application back until the key file exists, and it does not keep a Job
from completing. It alone mounts the two projected tokens (one audience-bound for
Vault, one for the API server), and the Vault CA ConfigMap when one is configured; the
application only gets the key volume, read-only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from agent.operator.config import InjectionConfig

__all__ = [
    "AGENT_CONTAINER",
    "AGENT_PORT",
    "ANNOTATION_BINDING",
    "ANNOTATION_CONTAINERS",
    "ANNOTATION_MOUNT_PATH",
    "INJECT_LABEL",
    "InjectionError",
    "plan_injection",
]

INJECT_LABEL = "captchakeys.io/inject"
ANNOTATION_BINDING = "captchakeys.io/binding"
ANNOTATION_CONTAINERS = "captchakeys.io/containers"
ANNOTATION_MOUNT_PATH = "captchakeys.io/mount-path"
AGENT_CONTAINER = "captcha-key-agent"
AGENT_PORT = 8099
KEY_VOLUME = "captchaai-key"
VAULT_TOKEN_VOLUME = "captchaai-vault-token"
KUBE_API_VOLUME = "captchaai-kube-api"
VAULT_CA_VOLUME = "captchaai-vault-ca"
VAULT_TOKEN_DIR = "/var/run/secrets/captchakeys/vault"
KUBE_API_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
VAULT_CA_DIR = "/etc/captchakeys/vault-ca"
AGENT_UID = 65532

# Mounting the key over these would break the container or hide what it needs.
_SYSTEM_PATHS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin",
                 "/sys", "/usr", "/var/run/secrets", "/run/secrets")  # fmt: skip


class InjectionError(ValueError):
    """A pod asked for injection but cannot get it; ``str()`` says what to fix."""


def plan_injection(
    pod: Mapping[str, Any],
    binding: Mapping[str, Any] | None,
    config: InjectionConfig,
    *,
    vault_addr: str,
) -> dict[str, Any] | None:
    """The pod's new ``spec`` fields, or ``None`` when there is nothing to do.

    ``binding`` is the named CaptchaKeyBinding in the pod's namespace (``None``: absent).
    """
    metadata = pod.get("metadata") or {}
    if (metadata.get("labels") or {}).get(INJECT_LABEL) != "true":
        return None
    spec = pod.get("spec") or {}
    if any(c.get("name") == AGENT_CONTAINER for c in spec.get("initContainers") or []):
        return None  # admitted before (reinvocation, or a retried create): inject once.
    annotations = metadata.get("annotations") or {}
    binding_name = annotations.get(ANNOTATION_BINDING, "").strip()
    if not binding_name:
        raise InjectionError(
            f"the pod has the label {INJECT_LABEL}=true but no {ANNOTATION_BINDING} annotation: "
            "name the CaptchaKeyBinding whose key it should receive"
        )
    if binding is None:
        raise InjectionError(
            f"CaptchaKeyBinding {binding_name!r} (annotation {ANNOTATION_BINDING}) does not exist "
            "in this namespace: create it first (kubectl get ckb) or fix the annotation"
        )
    containers: list[dict[str, Any]] = [dict(c) for c in spec.get("containers") or []]
    targets = _target_containers(containers, annotations.get(ANNOTATION_CONTAINERS, ""))
    mount_path = _mount_path(annotations.get(ANNOTATION_MOUNT_PATH, config.mount_path))
    _refuse_clashes(spec, containers, targets, mount_path)
    file_spec = (binding.get("spec") or {}).get("file") or {}
    key_file = posixpath.join(mount_path, str(file_spec.get("name") or "api_key"))
    for container in containers:
        if container["name"] in targets:
            container["volumeMounts"] = [
                *container.get("volumeMounts", []),
                {"name": KEY_VOLUME, "mountPath": mount_path, "readOnly": True},
            ]
            container["env"] = [
                *[e for e in container.get("env", []) if e.get("name") != "CAPTCHAAI_KEY_FILE"],
                {"name": "CAPTCHAAI_KEY_FILE", "value": key_file},
            ]
    auth = ((binding.get("spec") or {}).get("vault") or {}).get("auth") or {}
    audience = str(auth.get("audience") or config.token_audience)
    planned: dict[str, Any] = {
        "initContainers": [
            _agent_container(binding_name, pod, config, vault_addr),
            *(spec.get("initContainers") or []),
        ],
        "containers": containers,
        "volumes": [*(spec.get("volumes") or []), *_volumes(config, audience)],
    }
    pod_security = spec.get("securityContext") or {}
    if "runAsUser" not in pod_security:
        # The agent then runs as AGENT_UID and writes the key group-readable (0440) with
        # its group: give every container that group, so an application running as any
        # user can read it. A supplemental group changes no volume ownership.
        groups = list(pod_security.get("supplementalGroups") or [])
        if AGENT_UID not in groups:
            planned["securityContext"] = {
                **pod_security,
                "supplementalGroups": [*groups, AGENT_UID],
            }
    return planned


def _target_containers(containers: Sequence[Mapping[str, Any]], wanted: str) -> set[str]:
    names = [str(c.get("name")) for c in containers]
    if not wanted.strip():
        return set(names)
    requested = {name.strip() for name in wanted.split(",") if name.strip()}
    unknown = sorted(requested - set(names))
    if unknown:
        raise InjectionError(
            f"{ANNOTATION_CONTAINERS} names {', '.join(unknown)}, which the pod does not have "
            f"(its containers: {', '.join(names)}): fix the annotation"
        )
    return requested


def _mount_path(path: str) -> str:
    normal = posixpath.normpath(path.strip())
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined); the kubelet
    # does not, so "//etc" would land on /etc. "/" is judged as a system path below.
    if not path.startswith("/") or path.startswith("//") or normal != (path.rstrip("/") or "/"):
        raise InjectionError(
            f"{ANNOTATION_MOUNT_PATH} {path!r} must be an absolute, normalised directory path "
            "such as /var/run/captchaai"
        )
    for system in _SYSTEM_PATHS:
        if normal == system or (system != "/" and normal.startswith(system + "/")):
            raise InjectionError(
                f"{ANNOTATION_MOUNT_PATH} {path!r} is on the system path {system}: the key "
                "volume would hide what is there; use e.g. /var/run/captchaai"
            )
    return normal


def _refuse_clashes(
    spec: Mapping[str, Any], containers: Sequence[Mapping[str, Any]], targets: set[str], path: str
) -> None:
    ours = {KEY_VOLUME, VAULT_TOKEN_VOLUME, KUBE_API_VOLUME, VAULT_CA_VOLUME}
    clash = sorted(ours & {str(v.get("name")) for v in spec.get("volumes") or []})
    if clash:
        raise InjectionError(
            f"the pod already has volume(s) named {', '.join(clash)}, which the key agent "
            "injects: rename them"
        )
    for container in containers:
        if container.get("name") not in targets:
            continue
        for mount in container.get("volumeMounts") or []:
            if posixpath.normpath(str(mount.get("mountPath"))) == path:
                raise InjectionError(
                    f"container {container.get('name')!r} already mounts {mount.get('name')!r} "
                    f"at {path}: choose another {ANNOTATION_MOUNT_PATH}"
                )


def _agent_container(
    binding: str, pod: Mapping[str, Any], config: InjectionConfig, vault_addr: str
) -> dict[str, Any]:
    pod_security = (pod.get("spec") or {}).get("securityContext") or {}
    security: dict[str, Any] = {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if "runAsUser" not in pod_security:
        # Same user as the application when the pod sets one (so a 0440 key is
        # readable by it); otherwise a fixed unprivileged user.
        security.update(runAsUser=AGENT_UID, runAsGroup=AGENT_UID)

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": AGENT_PORT},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 2,
        }

    env: list[dict[str, Any]] = [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "VAULT_ADDR", "value": vault_addr},
        {"name": "CAPTCHAKEY_OUT_DIR", "value": config.mount_path},
        {"name": "CAPTCHAKEY_TOKEN_FILE", "value": f"{VAULT_TOKEN_DIR}/token"},
        {"name": "CAPTCHAKEY_HEALTH_ADDR", "value": f"0.0.0.0:{AGENT_PORT}"},
        {"name": "CAPTCHAKEY_LOG_LEVEL", "value": config.log_level},
        {"name": "CAPTCHAKEY_LOG_FORMAT", "value": config.log_format},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": KEY_VOLUME, "mountPath": config.mount_path},
        {"name": VAULT_TOKEN_VOLUME, "mountPath": VAULT_TOKEN_DIR, "readOnly": True},
        {"name": KUBE_API_VOLUME, "mountPath": KUBE_API_DIR, "readOnly": True},
    ]
    if config.vault_ca_config_map:
        env.append({"name": "VAULT_CACERT", "value": f"{VAULT_CA_DIR}/ca.crt"})
        mounts.append({"name": VAULT_CA_VOLUME, "mountPath": VAULT_CA_DIR, "readOnly": True})
    return {
        "name": AGENT_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "restartPolicy": "Always",
        "args": ["agent", "--binding", binding],
        "env": env,
        "ports": [{"name": "ckb-agent", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "startupProbe": probe("/readyz", 1, 300),
        "readinessProbe": probe("/readyz", 10, 3),
        "livenessProbe": probe("/healthz", 20, 3),
        "resources": dict(config.resources),
        "securityContext": security,
        "volumeMounts": mounts,
    }


def _volumes(config: InjectionConfig, audience: str) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": KEY_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {
            "name": VAULT_TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": audience,
                            "expirationSeconds": config.token_expiration_seconds,
                            "path": "token",
                        }
                    }
                ]
            },
        },
        {
            "name": KUBE_API_VOLUME,
            "projected": {
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
                                    "fieldRef": {"fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ]
            },
        },
    ]
    if config.vault_ca_config_map:
        volumes.append(
            {
                "name": VAULT_CA_VOLUME,
                "configMap": {
                    "name": config.vault_ca_config_map,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            }
        )
    return volumes
