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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent.operator.injection import AGENT_CONTAINER, AGENT_PORT, ANNOTATION_BINDING, INJECT_LABEL

__all__ = ["Consumer", "Rollout", "consumer_of", "read_versions", "summarize"]

_SCRAPE_CONCURRENCY = 32


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
    metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    address = status.get("podIP")
    if not address:
        return None
    port = AGENT_PORT
    for container in (pod.get("spec") or {}).get("initContainers") or []:
        if container.get("name") == AGENT_CONTAINER:
            for declared in container.get("ports") or []:
                if declared.get("name") == "ckb-agent":
                    port = int(declared["containerPort"])
    return Consumer(name=str(metadata.get("name")), address=str(address), port=port)


async def read_versions(
    consumers: Iterable[Consumer], *, seconds_each: float = 2.0
) -> dict[str, int | None]:
    """Ask every consumer's agent which version it holds (``None``: no answer, or none)."""
    limit = asyncio.Semaphore(_SCRAPE_CONCURRENCY)
    client_timeout = aiohttp.ClientTimeout(total=seconds_each)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:

        async def one(consumer: Consumer) -> tuple[str, int | None]:
            url = f"http://{_host(consumer.address)}:{consumer.port}/status"
            async with limit:
                try:
                    async with session.get(url) as response:
                        version = (await response.json()).get("version")
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    return consumer.name, None
            return consumer.name, version if isinstance(version, int) else None

        return dict(await asyncio.gather(*(one(c) for c in consumers)))


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@dataclass(frozen=True)
class Rollout:
    """A binding's rollout, as published in ``status.rollout``."""

    consumers: int
    up_to_date: int
    versions: dict[str, int]
    stragglers: list[str]
    safe_to_revoke: list[int]

    @property
    def complete(self) -> bool:
        return self.up_to_date == self.consumers

    def as_status(self) -> dict[str, Any]:
        return {
            "consumers": self.consumers,
            "upToDate": self.up_to_date,
            "versions": self.versions,
            "stragglers": self.stragglers,
            "safeToRevoke": self.safe_to_revoke,
        }


def summarize(held: Mapping[str, int | None], current: int, known: Iterable[int]) -> Rollout:
    """Aggregate what consumers hold against the current version.

    ``known`` are the versions Vault still has (live); an older one that no consumer
    holds is safe to revoke in the CaptchaAI dashboard. A consumer that did not answer
    counts as a straggler and keeps every older version unsafe: it may hold any of them.
    """
    counts: dict[str, int] = {}
    for version in held.values():
        label = str(version) if version is not None else "unknown"
        counts[label] = counts.get(label, 0) + 1
    stragglers = sorted(name for name, v in held.items() if v is None or v < current)
    unknown = any(v is None for v in held.values())
    still_held = {v for v in held.values() if v is not None}
    safe = [] if unknown else sorted(v for v in known if v < current and v not in still_held)
    return Rollout(
        consumers=len(held),
        up_to_date=sum(1 for v in held.values() if v is not None and v >= current),
        versions=counts,
        stragglers=stragglers,
        safe_to_revoke=safe,
    )
