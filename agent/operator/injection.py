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
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from agent.binding.policy import VaultPolicy
from agent.binding.schema import API_SERVER_AUDIENCES, InvalidBindingError
from agent.contract import agentargs
from agent.contract.agentargs import AgentOption
from agent.contract.pod import (
    AGENT_CONTAINER,
    AGENT_GID,
    AGENT_PORT,
    AGENT_PORT_NAME,
    AGENT_PYTHON_ENV,
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
from agent.keyfile import DEFAULT_FILE_NAME
from agent.operator.admission import (
    AgentResources,
    AnnotationError,
    InjectionError,
    InjectionRequest,
    Objects,
)
from agent.operator.config import InjectionConfig
from agent.operator.resources import with_agent_added

__all__ = ["InjectionError", "plan_injection"]

# The volumes the webhook adds: a pod that has one of these names already cannot get them.
_OUR_VOLUMES = frozenset(
    (KEY_VOLUME, VAULT_TOKEN_VOLUME, KUBE_API_VOLUME, VAULT_CA_VOLUME, AWS_TOKEN_VOLUME)
)


@dataclass(frozen=True)
class _Operator:
    """What the operator gives every agent it injects, besides the binding's name."""

    config: InjectionConfig
    vault_addr: str
    aws_endpoint_url: str | None
    policy: VaultPolicy | None


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
    binding_spec = _binding_spec(request.binding_name, binding)
    key_file = posixpath.join(request.mount_path, _file_name(binding_spec))
    resources = request.agent_resources
    if resources is None:  # a reinvocation: the agent and its volumes are there already.
        planned = _key_for_newcomers(request, key_file)
    else:
        operator = _Operator(config, vault_addr, aws_endpoint_url, policy)
        planned = _first_injection(request, resources, binding_spec, key_file, operator)
    security = _with_agent_group(request.security_context)
    if security is not None:
        planned["securityContext"] = security
    return planned or None


def _binding_spec(name: str, binding: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The named binding's spec; a name that names no binding is the annotation's fault."""
    if binding is None:
        raise AnnotationError(
            ANNOTATION_BINDING,
            f"CaptchaKeyBinding {name!r} (annotation {ANNOTATION_BINDING}) does not exist "
            "in this namespace: create it first (kubectl get ckb) or fix the annotation",
        )
    spec: Mapping[str, Any] = binding.get("spec") or {}
    return spec


def _file_name(binding_spec: Mapping[str, Any]) -> str:
    return str((binding_spec.get("file") or {}).get("name") or DEFAULT_FILE_NAME)


def _first_injection(
    request: InjectionRequest,
    resources: AgentResources,
    binding_spec: Mapping[str, Any],
    key_file: str,
    operator: _Operator,
) -> dict[str, Any]:
    """The agent first among the init containers, its volumes, the key for every target."""
    _refuse_volume_clashes(request.volumes)
    _refuse_mount_clashes(request.containers, request.targets, request.mount_path)
    audience = _vault_audience(request.binding_name, binding_spec, operator)
    agent = _agent_container(request.binding_name, operator.config, operator.vault_addr, resources)
    if operator.policy is not None:
        agent["env"].extend(operator.policy.as_env())
    planned: dict[str, Any] = {
        "initContainers": [agent, *request.init_containers],
        "containers": _give_key(request.containers, request.targets, request.mount_path, key_file),
        "volumes": [*request.volumes, *_volumes(operator.config, audience)],
    }
    if binding_spec.get("source") == "aws":
        sts_audience = _aws_audience(request.binding_name, binding_spec)
        _use_aws_identity(planned, sts_audience, operator.aws_endpoint_url)
    if request.pod_resources:  # pod-level resources (>= 1.32) must cover the agent too.
        planned["resources"] = with_agent_added(request.pod_resources, resources)
    return planned


def _key_for_newcomers(request: InjectionRequest, key_file: str) -> dict[str, Any]:
    """A reinvocation's plan: the key for the targets without it (a later webhook's)."""
    missing = {
        c["name"]
        for c in request.containers
        if c["name"] in request.targets and not _has_key(c, request.mount_path, key_file)
    }
    _refuse_mount_clashes(request.containers, missing, request.mount_path)
    if not missing:
        return {}
    return {"containers": _give_key(request.containers, missing, request.mount_path, key_file)}


def _vault_audience(name: str, binding_spec: Mapping[str, Any], operator: _Operator) -> str:
    """The audience of the token for Vault: the binding's, or the config's; the policy's."""
    auth = (binding_spec.get("vault") or {}).get("auth") or {}
    audience = str(auth.get("audience") or operator.config.token_audience)
    if operator.policy is not None:
        _check_audience(operator.policy, name, audience)
    return audience


def _check_audience(policy: VaultPolicy, binding_name: str, audience: str) -> None:
    try:
        policy.check(None, audience)
    except InvalidBindingError as exc:
        raise InjectionError(f"CaptchaKeyBinding {binding_name!r}: {exc}") from None


def _aws_audience(name: str, binding_spec: Mapping[str, Any]) -> str:
    """The audience of an AWS binding's token for STS: never one the API server accepts."""
    audience = str((binding_spec.get("aws") or {}).get("audience") or DEFAULT_AWS_AUDIENCE)
    if audience in API_SERVER_AUDIENCES:  # no such token minted, even for STS.
        raise InjectionError(
            f"CaptchaKeyBinding {name!r}: spec.aws.audience {audience!r} is the Kubernetes "
            "API server's own audience: use sts.amazonaws.com"
        )
    return audience


def _has_key(container: Mapping[str, Any], mount_path: str, key_file: str) -> bool:
    mounted = any(
        m.get("name") == KEY_VOLUME and m.get("mountPath") == mount_path
        for m in container.get("volumeMounts") or []
    )
    told = {"name": KEY_FILE_ENV, "value": key_file} in (container.get("env") or [])
    return mounted and told


def _give_key(
    containers: Objects, targets: AbstractSet[str], mount_path: str, key_file: str
) -> list[dict[str, Any]]:
    """The containers (copies), the targets with the key mounted read-only and told where."""
    return [
        _with_key(c, mount_path, key_file) if c.get("name") in targets else dict(c)
        for c in containers
    ]


def _with_key(container: Mapping[str, Any], mount_path: str, key_file: str) -> dict[str, Any]:
    """The container with the key volume at ``mount_path`` and ``CAPTCHAAI_KEY_FILE`` set."""
    mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != KEY_VOLUME]
    env = [e for e in container.get("env") or [] if e.get("name") != KEY_FILE_ENV]
    return {
        **container,
        "volumeMounts": [*mounts, {"name": KEY_VOLUME, "mountPath": mount_path, "readOnly": True}],
        "env": [*env, {"name": KEY_FILE_ENV, "value": key_file}],
    }


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


def _refuse_volume_clashes(volumes: Objects) -> None:
    clash = sorted(_OUR_VOLUMES.intersection(str(v.get("name")) for v in volumes))
    if clash:
        raise InjectionError(
            f"the pod already has volume(s) named {', '.join(clash)}, which the key agent "
            "injects: rename them"
        )


def _refuse_mount_clashes(containers: Objects, targets: AbstractSet[str], path: str) -> None:
    """A target container must have nothing but the key mounted where the key goes."""
    for container in containers:
        if container.get("name") not in targets:
            continue
        mount = _other_mount_at(container, path)
        if mount is not None:
            raise InjectionError(
                f"container {container.get('name')!r} already mounts {mount.get('name')!r} "
                f"at {path}: choose another {ANNOTATION_MOUNT_PATH}"
            )


def _other_mount_at(container: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The container's mount at ``path``, unless it is the key's own (from an earlier pass)."""
    mounts = container.get("volumeMounts") or []
    others = (m for m in mounts if m.get("name") != KEY_VOLUME)
    return next((m for m in others if posixpath.normpath(str(m.get("mountPath"))) == path), None)


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
    sts_mount = {"name": AWS_TOKEN_VOLUME, "mountPath": AWS_TOKEN_DIR, "readOnly": True}
    agent["volumeMounts"] = [
        sts_mount if mount["name"] == VAULT_TOKEN_VOLUME else mount
        for mount in agent["volumeMounts"]
    ]
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
        *({"name": name, "value": value} for name, value in AGENT_PYTHON_ENV.items()),
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
        "ports": [{"name": AGENT_PORT_NAME, "containerPort": AGENT_PORT, "protocol": "TCP"}],
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
                            "path": VAULT_TOKEN_FILE.name,
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
