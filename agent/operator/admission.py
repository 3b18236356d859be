"""An opted-in pod, read once from its AdmissionReview into the request the webhook plans.

Why once: the webhook needs the binding's name to look the binding up before it can plan,
and the plan needs the other annotations and the pod's spec. Read in two places, each
annotation was read and checked twice, and the two readings could drift. So the pod is
read here, once, into a frozen :class:`InjectionRequest`, each annotation checked where
it is read; :func:`agent.operator.injection.plan_injection` works from the request alone
and never looks at the annotations again.

A bad annotation is refused with one :class:`AnnotationError` that names it, says what
is wrong with its value and how to fix it, before the binding is even looked up.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.contract.pod import (
    AGENT_CONTAINER,
    ANNOTATION_AGENT_RESOURCES,
    ANNOTATION_BINDING,
    ANNOTATION_CONTAINERS,
    ANNOTATION_MOUNT_PATH,
    INJECT_LABEL,
)
from agent.operator.config import InjectionConfig
from agent.operator.resources import (
    ResourcesError,
    agent_resources,
    resources_from_annotation,
)

__all__ = [
    "AgentResources",
    "AnnotationError",
    "InjectionError",
    "InjectionRequest",
    "Objects",
    "parse_pod",
]

AgentResources = Mapping[str, Mapping[str, str]]  # requests and limits, each cpu and memory.
Objects = tuple[Mapping[str, Any], ...]  # containers, init containers or volumes, as admitted.

# Mounting the key over these would break the container, or hide the tokens it reads.
_SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr")
_SECRET_DIRS = ("/var/run/secrets", "/run/secrets")
_PATH_EXAMPLE = "/var/run/captchaai"


class InjectionError(ValueError):
    """A pod asked for injection but cannot get it; ``str()`` says what to fix."""


class AnnotationError(InjectionError):
    """One of the pod's annotations cannot be used: ``annotation`` names it.

    ``str()`` says what is wrong with its value and how to fix it.
    """

    def __init__(self, annotation: str, message: str) -> None:
        super().__init__(message)
        self.annotation = annotation


@dataclass(frozen=True)
class InjectionRequest:
    """What the webhook knows of an opted-in pod: its annotations checked, its spec read.

    ``agent_resources`` is what a new agent gets (the configured resources, the
    annotation's over them, kept to the pod's QoS class); ``None`` when the pod already
    has the agent, which comes with its own.
    """

    namespace: str
    binding_name: str
    containers: Objects
    targets: frozenset[str]  # the containers that receive the key.
    mount_path: str  # absolute and normalised, on no system path.
    agent_resources: AgentResources | None
    init_containers: Objects
    volumes: Objects
    security_context: Mapping[str, Any]
    pod_resources: Mapping[str, Any]  # pod-level spec.resources (>= 1.32); {} when unset.

    @property
    def reinvocation(self) -> bool:
        """The pod already has the agent (``reinvocationPolicy: IfNeeded``).

        A later webhook changed the pod (e.g. added a container): only what is missing
        is to be added.
        """
        return self.agent_resources is None


def parse_pod(pod: Mapping[str, Any], config: InjectionConfig) -> InjectionRequest | None:
    """The pod's request; ``None`` when it did not opt in (then nothing else is read).

    ``config`` gives the defaults the annotations override: the mount path and the
    agent's resources.
    """
    metadata = pod.get("metadata") or {}
    if (metadata.get("labels") or {}).get(INJECT_LABEL) != "true":
        return None
    spec = pod.get("spec") or {}
    _refuse_windows(spec)
    return _request(metadata, spec, config)


def _request(
    metadata: Mapping[str, Any], spec: Mapping[str, Any], config: InjectionConfig
) -> InjectionRequest:
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    containers, init_containers = _listed(spec, "containers"), _listed(spec, "initContainers")
    has_agent = any(c.get("name") == AGENT_CONTAINER for c in init_containers)
    return InjectionRequest(
        namespace=str(metadata.get("namespace") or ""),
        binding_name=_binding_name(annotations),
        containers=containers,
        targets=_targets(annotations.get(ANNOTATION_CONTAINERS, ""), containers),
        mount_path=_mount_path(annotations.get(ANNOTATION_MOUNT_PATH, config.mount_path)),
        agent_resources=None if has_agent else _agent_resources(annotations, config, spec),
        init_containers=init_containers,
        volumes=_listed(spec, "volumes"),
        security_context=spec.get("securityContext") or {},
        pod_resources=spec.get("resources") or {},
    )


def _listed(spec: Mapping[str, Any], field: str) -> Objects:
    return tuple(spec.get(field) or ())


def _refuse_windows(spec: Mapping[str, Any]) -> None:
    if (spec.get("os") or {}).get("name") == "windows":
        raise InjectionError(
            "the key agent is a Linux container and this pod sets spec.os.name: windows: "
            f"remove the {INJECT_LABEL} label, or run the workload on Linux"
        )


def _binding_name(annotations: Mapping[str, str]) -> str:
    name = annotations.get(ANNOTATION_BINDING, "").strip()
    if not name:
        raise AnnotationError(
            ANNOTATION_BINDING,
            f"the pod has the label {INJECT_LABEL}=true but no {ANNOTATION_BINDING} annotation: "
            "name the CaptchaKeyBinding whose key it should receive",
        )
    return name


def _targets(wanted: str, containers: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """The containers that receive the key: those the annotation lists, or all of them."""
    names = [str(c.get("name")) for c in containers]
    if not wanted.strip():
        return frozenset(names)
    requested = frozenset(name.strip() for name in wanted.split(",") if name.strip())
    if not requested:
        raise AnnotationError(
            ANNOTATION_CONTAINERS,
            f"{ANNOTATION_CONTAINERS} {wanted!r} names no container: list the containers "
            f"that read the key, separated by commas (the pod's: {', '.join(names)}), or "
            "remove the annotation to give it to all of them",
        )
    unknown = sorted(requested - set(names))
    if unknown:
        raise AnnotationError(
            ANNOTATION_CONTAINERS,
            f"{ANNOTATION_CONTAINERS} names {', '.join(unknown)}, which the pod does not have "
            f"(its containers: {', '.join(names)}): fix the annotation",
        )
    return requested


def _mount_path(path: str) -> str:
    """The key volume's directory: plain, absolute, normalised, and on no system path."""
    _refuse_control_characters(path)
    normal = posixpath.normpath(path.strip())
    _refuse_unnormalised(path, normal)
    _refuse_system_path(path, normal)
    return normal


def _refuse_control_characters(path: str) -> None:
    bad = next((c for c in path if not c.isprintable()), None)
    if bad is not None:
        raise AnnotationError(
            ANNOTATION_MOUNT_PATH,
            f"{ANNOTATION_MOUNT_PATH} {path!r} contains the control character {bad!r} "
            f"(at position {path.index(bad)}): use a plain directory path such as "
            f"{_PATH_EXAMPLE}",
        )


def _refuse_unnormalised(path: str, normal: str) -> None:
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined); the kubelet
    # does not, so "//etc" would land on /etc. "/" is judged as a system path.
    absolute = path.startswith("/") and not path.startswith("//")
    if not absolute or normal != (path.rstrip("/") or "/"):
        raise AnnotationError(
            ANNOTATION_MOUNT_PATH,
            f"{ANNOTATION_MOUNT_PATH} {path!r} must be an absolute, normalised directory path "
            f"such as {_PATH_EXAMPLE}",
        )


def _refuse_system_path(path: str, normal: str) -> None:
    system = _system_dir_of(normal)
    if system is not None:
        raise AnnotationError(
            ANNOTATION_MOUNT_PATH,
            f"{ANNOTATION_MOUNT_PATH} {path!r} is on the system path {system}: the key "
            f"volume would hide what is there; use e.g. {_PATH_EXAMPLE}",
        )


def _system_dir_of(normal: str) -> str | None:
    """The system directory ``normal`` is or is under ("/" only as itself)."""
    if normal == "/":
        return "/"
    dirs = (*_SYSTEM_DIRS, *_SECRET_DIRS)
    return next((d for d in dirs if f"{normal}/".startswith(f"{d}/")), None)


def _agent_resources(
    annotations: Mapping[str, str], config: InjectionConfig, spec: Mapping[str, Any]
) -> AgentResources:
    """A new agent's resources: the config's, the annotation's over them; Guaranteed stays."""
    try:
        return agent_resources(_annotated(annotations, config.resources), spec)
    except ResourcesError as exc:  # a quantity in the pod's own spec.
        raise InjectionError(str(exc)) from None


def _annotated(annotations: Mapping[str, str], configured: AgentResources) -> AgentResources:
    text = annotations.get(ANNOTATION_AGENT_RESOURCES)
    if text is None:
        return configured
    try:
        return resources_from_annotation(text, configured, ANNOTATION_AGENT_RESOURCES)
    except ResourcesError as exc:
        raise AnnotationError(ANNOTATION_AGENT_RESOURCES, str(exc)) from None
