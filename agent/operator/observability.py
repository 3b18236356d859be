"""The operator's probes and Prometheus metrics, on ports of their own.

- ``/healthz`` (liveness): the event loop answers. ``/readyz`` (readiness): the webhook
  server accepts connections, so the Service only routes admission requests to replicas
  that can answer them (with ``failurePolicy: Fail``, a replica that is up but not yet
  serving would otherwise refuse opted-in pods).
- ``/metrics``: admission counts and latency, Vault failures by reason, each binding's
  current version and its consumers split into disjoint states (so ``sum()`` over
  ``state`` is the number of consumers), build information and the process's own
  CPU, memory and file descriptors. Labels are names and versions: never a key. Every
  metric is listed in docs/metrics.md (a test keeps that table and this code in step).

Metrics live in a registry of this operator's own, not prometheus_client's global one,
so that two operators in one process (tests) do not collide; prometheus_client's own
aiohttp handler serves it (content negotiation, OpenMetrics, compression).
"""

from __future__ import annotations

import asyncio
import contextlib
import platform

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.aiohttp import make_aiohttp_handler

from agent import __version__
from agent.runtime.http import serve_routes

__all__ = ["CONSUMER_STATES", "Metrics", "serve_metrics", "serve_probes"]

# The values of captchakey_binding_consumers' `state` label: disjoint, so they sum.
CONSUMER_STATES = ("up_to_date", "outdated")
# Fine below 25 ms, where the admission goal lies (p99 <= 15 ms, docs/benchmarks.md).
_ADMISSION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """Everything the operator measures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.admissions = Counter(
            "captchakey_admission_requests",
            "Admission reviews answered.",
            ["webhook", "allowed"],
            registry=self.registry,
        )
        self.admission_seconds = Histogram(
            "captchakey_admission_duration_seconds",
            "Time to answer an admission review.",
            ["webhook"],
            registry=self.registry,
            buckets=_ADMISSION_BUCKETS,
        )
        self.vault_errors = Counter(
            "captchakey_vault_errors",
            "Failed Vault metadata reads, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.current_version = Gauge(
            "captchakey_binding_current_version",
            "The Vault version a binding's consumers follow.",
            ["namespace", "binding"],
            registry=self.registry,
        )
        self.consumers = Gauge(
            "captchakey_binding_consumers",
            "Live consumers of a binding by state: up_to_date holds the current version, "
            "outdated does not (or could not be read); the states sum to all consumers.",
            ["namespace", "binding", "state"],
            registry=self.registry,
        )
        Info(
            "captchakey_build", "The operator's build: version and Python.", registry=self.registry
        ).info({"version": __version__, "python": platform.python_version()})
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds.
        PlatformCollector(registry=self.registry)  # python_info.

    def set_consumers(self, namespace: str, binding: str, total: int, up_to_date: int) -> None:
        """Publish a binding's consumers as disjoint states that add up to ``total``."""
        self.consumers.labels(namespace, binding, "up_to_date").set(up_to_date)
        self.consumers.labels(namespace, binding, "outdated").set(total - up_to_date)


async def serve_probes(host: str, port: int, webhook_port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", webhook_port), timeout=1
            )
        except (OSError, TimeoutError):
            return web.Response(status=503, text="webhook server not listening yet\n")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return web.Response(text="ready\n")

    return await serve_routes(host, port, {"/healthz": healthz, "/readyz": readyz})


async def serve_metrics(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    return await serve_routes(host, port, {"/metrics": make_aiohttp_handler(metrics.registry)})
