"""Run the key agent as a process: signals, health endpoints, the refresh loop.

SIGTERM/SIGINT stop it gracefully (the file stays: it belongs to the pod's volume, not
to the process); SIGHUP asks for an immediate refresh, which is how a plain
``kill -HUP`` or a script can push a rotation outside Kubernetes.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from agent.sidecar.health import serve_health
from agent.sidecar.loop import KeyAgent

__all__ = ["HealthAddress", "run_until_signalled"]

HealthAddress = tuple[str, int] | None

_log = logging.getLogger(__name__)


async def run_until_signalled(agent: KeyAgent, health: HealthAddress) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, agent.stop)
    loop.add_signal_handler(signal.SIGINT, agent.stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: agent.request_refresh(force=True))
    runner = await serve_health(agent, *health, metrics=agent.metrics) if health else None
    _log.info("key agent started", extra={"source": str(agent.refresher.ref)})
    try:
        await agent.run()
    finally:
        if runner is not None:
            await runner.cleanup()
        _log.info("key agent stopped")
