"""The small GET-only HTTP server behind the probes and metrics of both processes.

The operator and the key agent each serve a few read-only endpoints (probes, metrics,
the agent's ``/status``) on ports of their own, apart from kopf's: one aiohttp server
shape for both, without access logs (a kubelet probing every few seconds would fill
them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

__all__ = ["Handler", "serve_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_routes(host: str, port: int, routes: Mapping[str, Handler]) -> web.AppRunner:
    """A small GET-only HTTP server; the caller owns the runner and cleans it up."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
