"""What the mutating webhook does to an opted-in pod, as a pure function.

Opt-in is the pod *label* ``captchakeys.io/inject: "true"``: the webhook's
objectSelector matches it, so pods that did not opt in never reach the webhook and an
outage of the operator can only affect pods that asked for a key. The binding and the
options are annotations, read and checked once into an
:class:`~agent.operator.admission.InjectionRequest` before anything here runs.

The key agent becomes a *native sidecar* (an init container with ``restartPolicy:
Always``, Kubernetes ≥ 1.29): it starts before the application, its startup probe
holds the application back until the key file exists, and it does not keep a Job
from completing. It alone mounts the two projected tokens (one audience-bound for
Vault, one for the API server), and the Vault CA ConfigMap when one is configured; the
application only gets the key volume, read-only.

Pods come in every shape, and each must keep working: the agent runs as its own
non-root user whatever the pod's security context says, and reaches every container
that receives the key through a group (:func:`_with_agent_group`); a reinvocation after
a later webhook added a container gives that container the key and nothing twice; the
agent's resources keep the pod's QoS class (:mod:`agent.operator.resources`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from agent.binding.policy import VaultPolicy
from agent.binding.schema import API_SERVER_AUDIENCES, InvalidBindingError
from agent.contract import agentargs
from agent.contract.agentargs import AgentOption
from agent.contract.pod import (
    AGENT_CONTAINER,
    AGENT_GID,
    AGENT_PORT,
    AGENT_UID,
    ANNOTATION_BINDING,
    ANNOTATION_MOUNT_PATH,
    AWS_TOKEN_DIR,
    AWS_TOKEN_FILE,
    AWS_TOKEN_VOLUME,
    DEFAULT_AWS_AUDIENCE,
    KEY_FILE_ENV,
    KEY_VOLUME,
    KUBE_API_DIR,
    KUBE_API_VOLUME,
    VAULT_CA_DIR,
    VAULT_CA_VOLUME,
    VAULT_TOKEN_DIR,
    VAULT_TOKEN_FILE,
    VAULT_TOKEN_VOLUME,
)
from agent.operator.admission import AnnotationError, InjectionError, InjectionRequest
from agent.operator.config import InjectionConfig
from agent.operator.resources import with_agent_added

__all__ = ["InjectionError", "plan_injection"]


def plan_injection(
    request: InjectionRequest,
    binding: Mapping[str, Any] | None,
    config: InjectionConfig,
    *,
    vault_addr: str,
    aws_endpoint_url: str | None = None,
    policy: VaultPolicy | None = None,
) -> dict[str, Any] | None:
    """The pod's new ``spec`` fields, or ``None`` when there is nothing to do.

    ``request`` is the pod, read by :func:`agent.operator.admission.parse_pod`;
    ``binding`` the CaptchaKeyBinding it names, in the pod's namespace (``None``: absent).
    A pod that already has the agent is being reinvoked (``reinvocationPolicy:
    IfNeeded``: a later webhook changed it, e.g. added a container): only what is
    missing is added (the key for containers that do not have it yet, the agent's group),
    so a second pass over the same pod plans nothing. ``policy`` (the operator's
    allow-lists) is handed to the agent, and a binding whose token audience it does not
    allow gets no token minted for that audience.
    """
    binding_name = request.binding_name
    if binding is None:
        raise AnnotationError(
            ANNOTATION_BINDING,
            f"CaptchaKeyBinding {binding_name!r} (annotation {ANNOTATION_BINDING}) does not exist "
            "in this namespace: create it first (kubectl get ckb) or fix the annotation",
        )
    containers: list[dict[str, Any]] = [dict(c) for c in request.containers]
    targets = set(request.targets)
    mount_path = request.mount_path
    file_spec = (binding.get("spec") or {}).get("file") or {}
    key_file = posixpath.join(mount_path, str(file_spec.get("name") or "api_key"))
    planned: dict[str, Any] = {}
    resources = request.agent_resources
    if resources is None:
        missing = {c["name"] for c in containers if c["name"] in targets
                   and not _has_key(c, mount_path, key_file)}  # fmt: skip
        _refuse_clashes((), containers, missing, mount_path)
        if missing:
            planned["containers"] = _give_key(containers, missing, mount_path, key_file)
    else:
        _refuse_clashes(request.volumes, containers, targets, mount_path)
        auth = (binding.get("spec") or {}).get("vault") or {}
        audience = str((auth.get("auth") or {}).get("audience") or config.token_audience)
        agent = _agent_container(binding_name, config, vault_addr, resources)
        if policy is not None:
            _check_audience(policy, binding_name, audience)
            agent["env"].extend(policy.as_env())
        planned = {
            "initContainers": [
                agent,
                *request.init_containers,
            ],
            "containers": _give_key(containers, targets, mount_path, key_file),
            "volumes": [*request.volumes, *_volumes(config, audience)],
        }
        binding_spec = binding.get("spec") or {}
        if binding_spec.get("source") == "aws":
            aws = binding_spec.get("aws") or {}
            aws_audience = str(aws.get("audience") or DEFAULT_AWS_AUDIENCE)
            if aws_audience in API_SERVER_AUDIENCES:  # no such token minted, even for STS.
                raise InjectionError(
                    f"CaptchaKeyBinding {binding_name!r}: spec.aws.audience {aws_audience!r} "
                    "is the Kubernetes API server's own audience: use sts.amazonaws.com"
                )
            _use_aws_identity(planned, aws_audience, aws_endpoint_url)
        if request.pod_resources:  # pod-level resources (>= 1.32) must cover the agent too.
            planned["resources"] = with_agent_added(request.pod_resources, resources)
    security = _with_agent_group(request.security_context)
    if security is not None:
        planned["securityContext"] = security
    return planned or None


def _check_audience(policy: VaultPolicy, binding_name: str, audience: str) -> None:
    try:
        policy.check(None, audience)
    except InvalidBindingError as exc:
        raise InjectionError(f"CaptchaKeyBinding {binding_name!r}: {exc}") from None


def _has_key(container: Mapping[str, Any], mount_path: str, key_file: str) -> bool:
    mounted = any(
        m.get("name") == KEY_VOLUME and m.get("mountPath") == mount_path
        for m in container.get("volumeMounts") or []
    )
    told = {"name": KEY_FILE_ENV, "value": key_file} in (container.get("env") or [])
    return mounted and told


def _give_key(
    containers: list[dict[str, Any]], targets: set[str], mount_path: str, key_file: str
) -> list[dict[str, Any]]:
    """The containers, the targets with the key mounted read-only and ``CAPTCHAAI_KEY_FILE``."""
    for container in containers:
        if container["name"] not in targets:
            continue
        mounts = [m for m in container.get("volumeMounts", []) if m.get("name") != KEY_VOLUME]
        container["volumeMounts"] = [
            *mounts,
            {"name": KEY_VOLUME, "mountPath": mount_path, "readOnly": True},
        ]
        container["env"] = [
            *[e for e in container.get("env", []) if e.get("name") != KEY_FILE_ENV],
            {"name": KEY_FILE_ENV, "value": key_file},
        ]
    return containers


def _with_agent_group(pod_security: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod's security context with the agent's group added to every container.

    The agent runs as AGENT_UID:AGENT_GID and writes the key 0440 (never world-readable):
    owned by itself and group AGENT_GID, or group ``fsGroup`` when the pod sets one (the
    kubelet makes the volume setgid to it). Every container of a pod gets the pod's
    supplementalGroups and its fsGroup, whatever user or group it runs as, so with
    AGENT_GID among them every container can read the key and nobody else can. A
    supplemental group changes no volume ownership. ``None``: already there.
    """
    groups = list(pod_security.get("supplementalGroups") or [])
    if AGENT_GID in groups:
        return None
    return {**pod_security, "supplementalGroups": [*groups, AGENT_GID]}


def _refuse_clashes(
    volumes: Sequence[Mapping[str, Any]],
    containers: Sequence[Mapping[str, Any]],
    targets: set[str],
    path: str,
) -> None:
    """Refuse names and paths the injection would collide with (in ``volumes``: our volumes)."""
    ours = {KEY_VOLUME, VAULT_TOKEN_VOLUME, KUBE_API_VOLUME, VAULT_CA_VOLUME, AWS_TOKEN_VOLUME}
    present = {str(v.get("name")) for v in volumes}
    clash = sorted(ours & present)
    if clash:
        raise InjectionError(
            f"the pod already has volume(s) named {', '.join(clash)}, which the key agent "
            "injects: rename them"
        )
    for container in containers:
        if container.get("name") not in targets:
            continue
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") == KEY_VOLUME:
                continue  # ours, from an earlier pass.
            if posixpath.normpath(str(mount.get("mountPath"))) == path:
                raise InjectionError(
                    f"container {container.get('name')!r} already mounts {mount.get('name')!r} "
                    f"at {path}: choose another {ANNOTATION_MOUNT_PATH}"
                )


def _use_aws_identity(planned: dict[str, Any], audience: str, endpoint_url: str | None) -> None:
    """An AWS binding's agent gets a token for STS instead of the one for Vault.

    Least privilege: the pod then holds no token Vault would accept, and the STS token
    exists only in pods whose binding reads AWS Secrets Manager.
    """
    for volume in planned["volumes"]:
        if volume.get("name") == VAULT_TOKEN_VOLUME:
            volume["name"] = AWS_TOKEN_VOLUME
            volume["projected"]["sources"][0]["serviceAccountToken"]["audience"] = audience
    agent = planned["initContainers"][0]
    agent["volumeMounts"] = [
        {"name": AWS_TOKEN_VOLUME, "mountPath": AWS_TOKEN_DIR, "readOnly": True}
        if mount["name"] == VAULT_TOKEN_VOLUME else mount
        for mount in agent["volumeMounts"]
    ]  # fmt: skip
    vault_only = {AgentOption.TOKEN_FILE.env, AgentOption.VAULT_ADDR.env}
    env = [e for e in agent["env"] if e["name"] not in vault_only]
    env.append(agentargs.env(AgentOption.AWS_TOKEN_FILE, AWS_TOKEN_FILE))
    if endpoint_url:
        env.append(agentargs.env(AgentOption.AWS_ENDPOINT_URL, endpoint_url))
    agent["env"] = env


def _agent_container(
    binding: str, config: InjectionConfig, vault_addr: str, resources: Mapping[str, Any]
) -> dict[str, Any]:
    # Its own identity whatever the pod says: a pod-level runAsUser (0 in legacy charts,
    # or the application's user) would otherwise be inherited. Container-level fields
    # win over the pod's, so these hold for every pod shape.
    security: dict[str, Any] = {
        "runAsUser": AGENT_UID,
        "runAsGroup": AGENT_GID,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": AGENT_PORT},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 2,
        }

    env: list[dict[str, Any]] = [
        agentargs.env_from_field(AgentOption.NAMESPACE, "metadata.namespace"),
        agentargs.env(AgentOption.VAULT_ADDR, vault_addr),
        agentargs.env(AgentOption.OUT_DIR, config.mount_path),
        agentargs.env(AgentOption.TOKEN_FILE, VAULT_TOKEN_FILE),
        agentargs.env(AgentOption.HEALTH_ADDR, f"0.0.0.0:{AGENT_PORT}"),
        # The slow resync for bindings that set none (chart: sidecar.refreshIntervalSeconds).
        agentargs.env(AgentOption.REFRESH_INTERVAL, config.refresh_interval_seconds),
        agentargs.env(AgentOption.LOG_LEVEL, config.log_level),
        agentargs.env(AgentOption.LOG_FORMAT, config.log_format),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": KEY_VOLUME, "mountPath": config.mount_path},
        {"name": VAULT_TOKEN_VOLUME, "mountPath": VAULT_TOKEN_DIR, "readOnly": True},
        {"name": KUBE_API_VOLUME, "mountPath": KUBE_API_DIR, "readOnly": True},
    ]
    if config.vault_ca_config_map:
        env.append(agentargs.env(AgentOption.VAULT_CACERT, f"{VAULT_CA_DIR}/ca.crt"))
        mounts.append({"name": VAULT_CA_VOLUME, "mountPath": VAULT_CA_DIR, "readOnly": True})
    return {
        "name": AGENT_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "restartPolicy": "Always",
        "args": agentargs.binding_args(binding),
        "env": env,
        "ports": [{"name": "ckb-agent", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "startupProbe": probe("/readyz", 1, 300),
        "readinessProbe": probe("/readyz", 10, 3),
        "livenessProbe": probe("/healthz", 20, 3),
        "resources": dict(resources),
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
