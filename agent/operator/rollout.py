"""Rollout tracking: which consumer pod holds which key version, and what is safe to revoke.

Consumers report with the least privilege there is: none. Each key agent already
serves ``/status`` (the version it holds, never the key) for its probes; the operator
reads it over the pod network. The sidecar gets no Kubernetes write permission at
all: no pod patches, no status objects, nothing a compromised application container
could abuse, and nothing that turns a rotation of a thousand pods into a thousand API
writes. The operator already may list pods; it needs one more thing, a network path
to the pods' port 8099, which the chart's NetworkPolicy spells out.

Only live consumers count: pods being deleted, finished (Succeeded/Failed) or not yet
scheduled are dropped, so a pod that died mid-rotation never blocks "safe to revoke".
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agent import versions
from agent.contract import agentstatus
from agent.contract.agentstatus import LastError
from agent.contract.bindingstatus import FailingConsumer, RolloutStatus
from agent.contract.pod import (
    AGENT_CONTAINER,
    AGENT_PORT,
    AGENT_PORT_NAME,
    ANNOTATION_BINDING,
    INJECT_LABEL,
)
from agent.versions import Version

__all__ = [
    "AGENT_UNREACHABLE",
    "Consumer",
    "Report",
    "Rollout",
    "consumer_of",
    "read_reports",
    "read_versions",
    "summarize",
]

_SCRAPE_CONCURRENCY = 32
_MAX_NAMED = 10  # failing consumers named in status; the count covers the rest.
#: The operator's own reason for a consumer whose agent does not answer ``/status``.
AGENT_UNREACHABLE = "AgentUnreachable"


@dataclass(frozen=True)
class Consumer:
    """A live pod that receives a binding's key, and where its agent answers."""

    name: str
    address: str
    port: int


def consumer_of(pod: Mapping[str, Any]) -> tuple[tuple[str, str], Consumer] | None:
    """The binding (namespace, name) a live opted-in pod consumes, and where its agent is.

    Used as a kopf index function: kopf fills every index before it starts any daemon,
    so a freshly started operator never judges a rollout on a half-listed set of pods
    (which would make an old key look safe to revoke).
    """
    metadata = pod.get("metadata") or {}
    if (metadata.get("labels") or {}).get(INJECT_LABEL) != "true":
        return None
    binding = (metadata.get("annotations") or {}).get(ANNOTATION_BINDING)
    consumer = _live_consumer(pod)
    if not binding or consumer is None:
        return None
    return (str(metadata.get("namespace")), binding), consumer


def _live_consumer(pod: Mapping[str, Any]) -> Consumer | None:
    """The pod's agent, unless the pod is going or gone, or has no address yet."""
    metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    address = status.get("podIP")
    if not address:
        return None
    return Consumer(name=str(metadata.get("name")), address=str(address), port=_agent_port(pod))


def _agent_port(pod: Mapping[str, Any]) -> int:
    """The port the injected agent declares: the one the webhook chose, else the default."""
    for container in (pod.get("spec") or {}).get("initContainers") or []:
        if container.get("name") == AGENT_CONTAINER:
            named = [p for p in container.get("ports") or [] if p.get("name") == AGENT_PORT_NAME]
            if named:
                return int(named[0]["containerPort"])
    return AGENT_PORT


@dataclass(frozen=True)
class Report:
    """What one consumer's agent said on ``/status``: the version it holds and why it fails."""

    version: Version | None
    error: LastError | None = None


async def read_reports(
    consumers: Iterable[Consumer], *, seconds_each: float = 2.0
) -> dict[str, Report]:
    """Ask every consumer's agent which version it holds and what its last error was.

    An agent that does not answer is reported as failing with reason ``AgentUnreachable``
    and the address tried: "why is this pod still on the old key?" then has an answer
    even when the answer is a NetworkPolicy.
    """
    limit = asyncio.Semaphore(_SCRAPE_CONCURRENCY)
    client_timeout = aiohttp.ClientTimeout(total=seconds_each)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:

        async def one(consumer: Consumer) -> tuple[str, Report]:
            url = f"http://{_host(consumer.address)}:{consumer.port}/status"
            async with limit:
                try:
                    async with session.get(url) as response:
                        body = await response.json()
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    return consumer.name, Report(None, _unreachable(url, exc))
            if not isinstance(body, dict):
                return consumer.name, Report(None, _unreachable(url, ValueError("not JSON")))
            status = agentstatus.parse(body)
            return consumer.name, Report(status.version, status.last_error)

        return dict(await asyncio.gather(*(one(c) for c in consumers)))


async def read_versions(
    consumers: Iterable[Consumer], *, seconds_each: float = 2.0
) -> dict[str, Version | None]:
    """Ask every consumer's agent which version it holds (``None``: no answer, or none)."""
    reports = await read_reports(consumers, seconds_each=seconds_each)
    return {name: report.version for name, report in reports.items()}


def _unreachable(url: str, exc: BaseException) -> LastError:
    detail = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
    return LastError(
        AGENT_UNREACHABLE,
        f"no answer from the agent at {url} ({detail}): is port {AGENT_PORT} "
        "open to the operator (NetworkPolicy)?",
    )


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@dataclass(frozen=True)
class Rollout:
    """A binding's rollout: what the consumers hold, and which of them fail and why."""

    consumers: int
    up_to_date: int
    versions: dict[str, int]
    stragglers: list[str]
    safe_to_revoke: list[Version]
    failing: dict[str, LastError] = field(default_factory=dict)  # every failing consumer.

    @property
    def complete(self) -> bool:
        return self.up_to_date == self.consumers

    def failing_status(self) -> tuple[FailingConsumer, ...]:
        """The first failing consumers by name, each with its agent's reason and message."""
        return tuple(
            FailingConsumer(name, error.reason, error.message, error.since or None)
            for name, error in sorted(self.failing.items())[:_MAX_NAMED]
        )

    def as_status(self) -> RolloutStatus:
        """As published in ``status.rollout``."""
        return RolloutStatus(
            consumers=self.consumers,
            up_to_date=self.up_to_date,
            versions=self.versions,
            stragglers=tuple(self.stragglers),
            safe_to_revoke=tuple(self.safe_to_revoke),
            failing=self.failing_status(),
        )


def summarize(
    held: Mapping[str, Version | None],
    current: Version,
    known: Iterable[Version],
    errors: Mapping[str, LastError | None] | None = None,
) -> Rollout:
    """Aggregate what consumers hold against the current version.

    ``known`` are the versions Vault still has (live); an older one that no consumer
    holds is safe to revoke in the CaptchaAI dashboard. ``errors`` are the consumers'
    last errors (``None``: healthy); those that have one are named as failing.
    """
    return Rollout(
        consumers=len(held),
        up_to_date=sum(1 for v in held.values() if versions.is_current(v, current)),
        versions=dict(Counter("unknown" if v is None else str(v) for v in held.values())),
        stragglers=sorted(name for name, v in held.items() if not versions.is_current(v, current)),
        safe_to_revoke=_revocable(held.values(), current, known),
        failing={name: error for name, error in (errors or {}).items() if error is not None},
    )


def _revocable(
    held: Iterable[Version | None], current: Version, known: Iterable[Version]
) -> list[Version]:
    """The older versions no consumer holds; none while a consumer did not answer.

    A consumer that did not answer counts as a straggler and keeps every older version
    unsafe: it may hold any of them.
    """
    still_held = set(held)
    if None in still_held:
        return []
    return _ordered(v for v in known if versions.is_older(v, current) and v not in still_held)


def _ordered(found: Iterable[Version]) -> list[Version]:
    """Vault numbers in order; AWS version ids (no order of their own) by name."""
    return sorted(found, key=lambda v: (isinstance(v, str), v if isinstance(v, int) else 0, str(v)))
