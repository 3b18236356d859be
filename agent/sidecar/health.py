"""HTTP endpoints for the kubelet and the operator: liveness, readiness, held version.

- ``/healthz``: the process answers. It does not look at Vault: an outage must not get
  the sidecar killed, since its cached key keeps the application working.
- ``/readyz``: a key is on disk and it is the version known to be wanted. A native
  sidecar's startup probe points here, so the application starts with its key.
- ``/status``: JSON with the version and fingerprint held (never the key), and
  ``lastError`` (:mod:`agent.contract.agentstatus`). The operator reads it to count which consumer
  holds which version during a rotation and to name failing consumers; reading it
  needs no Kubernetes permission on either side.
- ``/metrics``: Prometheus text format (:mod:`agent.sidecar.metrics`), never the key.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from agent.runtime.http import Handler, serve_routes
from agent.sidecar.metrics import CONTENT_TYPE, AgentMetrics

__all__ = ["StatusSource", "serve_health"]


class StatusSource(Protocol):
    """What the endpoints report on: a standalone agent, or one driven by a binding."""

    @property
    def ready(self) -> bool: ...

    @property
    def last_error(self) -> str | None: ...

    def status(self) -> dict[str, object]: ...


async def serve_health(
    agent: StatusSource, host: str, port: int, metrics: AgentMetrics | None = None
) -> web.AppRunner:
    """Start the endpoints; the caller owns the returned runner and cleans it up."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if agent.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {agent.last_error or 'no key yet'}\n")

    async def status(_: web.Request) -> web.Response:
        return web.json_response(agent.status())

    async def scrape(_: web.Request) -> web.Response:
        assert metrics is not None
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    routes: dict[str, Handler] = {"/healthz": healthz, "/readyz": readyz, "/status": status}
    if metrics is not None:
        routes["/metrics"] = scrape
    return await serve_routes(host, port, routes)
