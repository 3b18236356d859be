"""The injected agent's CPU and memory: what it costs a pod, and keeping the pod's QoS class.

Why this needs care: the kubelet derives a pod's QoS class from *all* its containers,
the native sidecar included. A Guaranteed pod (every container's requests equal its
limits) that gains an agent with requests below its limits silently becomes Burstable
and loses what Guaranteed gave it (exclusive CPUs under the static CPU manager, the
last place in the eviction order). So in a Guaranteed pod the agent requests exactly its
limits. A Burstable pod stays Burstable whatever the agent asks. A BestEffort pod is the
one class that cannot be kept: the agent always sets limits, because a namespace whose
ResourceQuota covers ``limits.cpu`` / ``limits.memory`` refuses any container without
them, and LimitRange defaults are applied *before* mutating webhooks run, so the agent
would get none.

The agent's resources come from the operator configuration (the chart's
``sidecar.resources``), overridden per workload by the pod annotation
``captchakeys.io/agent-resources`` (a JSON object with ``requests`` and/or ``limits``,
each with ``cpu`` and/or ``memory``), validated here so that a typo is refused at
admission with the reason, not discovered as an OOM-killed sidecar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "MIN_MEMORY_LIMIT",
    "ResourcesError",
    "agent_resources",
    "parse_quantity",
    "pod_qos_class",
    "qos_class",
    "resources_from_annotation",
    "validate_resources",
    "with_agent_added",
]

QoSClass = Literal["Guaranteed", "Burstable", "BestEffort"]
_COMPUTE = ("cpu", "memory")  # the only resources the kubelet's QoS class looks at.
_KNOWN = (*_COMPUTE, "ephemeral-storage")
_SECTIONS = ("requests", "limits")
# The agent's resident memory is about 52 MiB: below this limit it is OOM-killed in a loop.
MIN_MEMORY_LIMIT = "64Mi"

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
)
# The suffixes' factors: SI prefixes step by 10**3 from nano, binary ones by 2**10 from kibi.
_SI_PREFIXES = ("n", "u", "m", "", "k", "M", "G", "T", "P", "E")
_BINARY_PREFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_SUFFIXES = {
    **{prefix: Decimal(10) ** (3 * (i - 3)) for i, prefix in enumerate(_SI_PREFIXES)},
    **{prefix: Decimal(2) ** (10 * (i + 1)) for i, prefix in enumerate(_BINARY_PREFIXES)},
}


class ResourcesError(ValueError):
    """Agent resources that cannot be used; ``str()`` says which value and why."""


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes quantity (``"500m"``, ``"1.5"``, ``"96Mi"``, ``2``) as a number."""
    text = str(value).strip() if isinstance(value, (str, int, float)) else ""
    if isinstance(value, bool):
        text = ""
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ResourcesError(f"{value!r} is not a Kubernetes quantity (e.g. 100m, 0.5, 96Mi)")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
        return Decimal(number) * _SUFFIXES[suffix]
    except (InvalidOperation, ValueError):
        raise ResourcesError(f"{value!r} is not a Kubernetes quantity") from None


def validate_resources(resources: Mapping[str, Any], where: str) -> dict[str, dict[str, str]]:
    """The agent's resources, checked: limits on cpu and memory, requests within them.

    ``where`` names the source in messages (the config key or the annotation).
    """
    unknown = sorted(set(resources) - set(_SECTIONS))
    if unknown:
        raise ResourcesError(f"{where}: unknown key(s) {', '.join(unknown)}; use requests, limits")
    checked: dict[str, dict[str, str]] = {}
    for section in _SECTIONS:
        values = resources.get(section) or {}
        if not isinstance(values, Mapping):
            raise ResourcesError(f"{where}.{section} must be a mapping of cpu and memory")
        extra = sorted(set(values) - set(_KNOWN))
        if extra:
            raise ResourcesError(
                f"{where}.{section}: unknown resource(s) {', '.join(extra)}; use "
                f"{', '.join(_KNOWN)}"
            )
        for name, quantity in values.items():
            try:
                if parse_quantity(quantity) < 0:
                    raise ResourcesError("negative")
            except ResourcesError:
                raise ResourcesError(
                    f"{where}.{section}.{name}: {quantity!r} is not a non-negative Kubernetes "
                    "quantity (e.g. 100m, 0.5, 96Mi)"
                ) from None
        checked[section] = {name: str(quantity) for name, quantity in values.items()}
    _check_limits(checked, where)
    return checked


def _check_limits(resources: Mapping[str, Mapping[str, str]], where: str) -> None:
    limits, requests = resources["limits"], resources["requests"]
    missing = [name for name in _COMPUTE if name not in limits]
    if missing:
        raise ResourcesError(
            f"{where}.limits must set {' and '.join(missing)}: the agent always has limits, "
            "so a namespace whose ResourceQuota covers limits.cpu/limits.memory admits the pod"
        )
    if parse_quantity(limits["memory"]) < parse_quantity(MIN_MEMORY_LIMIT):
        raise ResourcesError(
            f"{where}.limits.memory {limits['memory']!r} is below {MIN_MEMORY_LIMIT}: the agent "
            "needs about 52Mi and would be OOM-killed"
        )
    for name, request in requests.items():
        if name in limits and parse_quantity(request) > parse_quantity(limits[name]):
            raise ResourcesError(
                f"{where}.requests.{name} {request!r} exceeds limits.{name} {limits[name]!r}"
            )


def resources_from_annotation(
    text: str, defaults: Mapping[str, Mapping[str, str]], annotation: str
) -> dict[str, dict[str, str]]:
    """The annotation's JSON merged over ``defaults`` resource by resource, validated."""
    try:
        override = json.loads(text)
    except ValueError:
        override = None
    if not isinstance(override, dict):
        raise ResourcesError(
            f"{annotation} must be a JSON object such as "
            '{"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "500m", '
            f'"memory": "128Mi"}}, not {text!r}'
        )
    merged: dict[str, Any] = {section: dict(defaults.get(section) or {}) for section in _SECTIONS}
    for section, values in override.items():
        if section in merged and isinstance(values, Mapping):
            merged[section].update(values)
        else:
            merged[section] = values
    return validate_resources(merged, annotation)


def qos_class(containers: Iterable[Mapping[str, Any]]) -> QoSClass:
    """The pod's QoS class from its containers, by the kubelet's rule (cpu and memory only).

    Guaranteed: every container limits both cpu and memory, and the summed requests equal
    the summed limits; BestEffort: nothing requested or limited anywhere.
    """
    listed = list(containers)
    requests, limits = _summed(listed, "requests"), _summed(listed, "limits")
    if not requests and not limits:
        return "BestEffort"
    if requests == limits and all(_limits_both(c) for c in listed):
        return "Guaranteed"
    return "Burstable"


def _summed(containers: Iterable[Mapping[str, Any]], section: str) -> dict[str, Decimal]:
    """Each compute resource's total over the containers that set it to more than zero."""
    total: dict[str, Decimal] = {}
    for container in containers:
        for name, amount in _amounts(container, section).items():
            total[name] = total.get(name, Decimal(0)) + amount
    return total


def _amounts(container: Mapping[str, Any], section: str) -> dict[str, Decimal]:
    values = (container.get("resources") or {}).get(section) or {}
    given = {name: values.get(name) for name in _COMPUTE}
    amounts = {name: parse_quantity(value) for name, value in given.items() if value is not None}
    return {name: amount for name, amount in amounts.items() if amount != 0}


def _limits_both(container: Mapping[str, Any]) -> bool:
    limits = (container.get("resources") or {}).get("limits") or {}
    return all(parse_quantity(limits.get(name, 0)) != 0 for name in _COMPUTE)


def pod_qos_class(spec: Mapping[str, Any]) -> QoSClass:
    """The QoS class of a pod spec: from its pod-level resources when it sets them.

    Pod-level ``spec.resources`` (Kubernetes >= 1.32) decide the class when present, as
    the kubelet does; otherwise every container (init containers included) does.
    """
    if spec.get("resources"):
        return qos_class([{"resources": spec["resources"]}])
    return qos_class([*(spec.get("initContainers") or []), *(spec.get("containers") or [])])


def agent_resources(
    configured: Mapping[str, Mapping[str, str]], spec: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """What the agent gets in a pod with this spec: Guaranteed stays Guaranteed."""
    limits = dict(configured["limits"])
    if pod_qos_class(spec) == "Guaranteed":
        return {"requests": dict(limits), "limits": limits}
    return {"requests": dict(configured.get("requests") or {}), "limits": limits}


def with_agent_added(
    pod_resources: Mapping[str, Any], agent: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """Pod-level resources grown by the agent's own, so the pod stays valid.

    The API server refuses a pod whose containers together request more than its
    pod-level requests, or one container limited above the pod's limits; each cpu/memory
    amount the pod sets grows by the agent's, and nothing the pod leaves unset is added.
    """
    grown: dict[str, Any] = {key: dict(value) for key, value in pod_resources.items()}
    for section in _SECTIONS:
        for name in _COMPUTE:
            have = (grown.get(section) or {}).get(name)
            extra = (agent.get(section) or {}).get(name)
            if have is not None and extra is not None:
                total = parse_quantity(have) + parse_quantity(extra)
                grown[section][name] = _format(name, total)
    return grown


def _format(name: str, amount: Decimal) -> str:
    if name == "cpu":
        return f"{int((amount * 1000).to_integral_value(rounding=ROUND_CEILING))}m"
    return str(int(amount.to_integral_value(rounding=ROUND_CEILING)))
