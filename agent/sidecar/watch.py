"""kopf's watch of the agent's own ``CaptchaKeyBinding``: a read-only stream of its events.

Why kopf, and why only ``@kopf.on.event``: kopf gives a robust watch (reconnects,
resource versions, backoff) for the cost of one dependency the operator needs anyway.
Its change handlers (create/update/resume), daemons and timers *write* to the object
(progress and diff-base annotations, finalizers), and with hundreds of agents per
binding that would be a write storm on one object, and an RBAC grant nobody should
give a sidecar. Event handlers are pure watching: nothing is written. Event posting
and cluster scanning are switched off too, so the agent's whole conversation with the
API server is a list and a watch on bindings in its namespace (and, at start, the one
plain read of :mod:`agent.sidecar.firstkey`).

Every event goes to :meth:`BindingAgent.on_event`. This module alone imports kopf and
the health server (aiohttp): an injected agent loads them only once its first key is on
disk.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from agent.binding.model import GROUP, PLURAL, VERSION
from agent.sidecar.bindingagent import BindingAgent
from agent.sidecar.health import serve_health

__all__ = ["AGENT_FINALIZER", "build_registry", "run_binding_agent"]

AGENT_FINALIZER = "captchakeys.io/key-agent"

_log = logging.getLogger(__name__)


def build_registry(
    binding: BindingAgent, connection: kopf.ConnectionInfo | None = None
) -> kopf.OperatorRegistry:
    """A registry of this agent's own: kopf's default one is global to the process."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # no Events: the agent writes nothing at all.
        settings.scanning.disabled = True  # no CRD/namespace watching: one namespace only.
        settings.watching.server_timeout = 600
        settings.watching.client_timeout = 660
        settings.networking.request_timeout = 30
        # kopf removes a finalizer of its own name that no handler of its needs: under the
        # default name it took the operator's (its status daemon's) for its own and, at
        # every event of the binding, every agent patched the binding to remove it: N
        # refused writes per event (the agent may only read), and a fight with the
        # operator where RBAC allows it. A name of the agent's own, which it never sets.
        settings.persistence.finalizer = AGENT_FINALIZER

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if connection is not None:
            return connection
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def stop_refreshing(**_: Any) -> None:
        # Inside kopf's shutdown, so that kopf does not wait out its grace period for a
        # task it did not start: a terminating pod should not linger for it.
        await binding.close()

    def is_ours(name: str, **_: Any) -> bool:
        return name == binding.name

    # async: kopf runs sync handlers in a thread pool, and this one touches the event loop.
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, when=is_ours)
    async def on_binding(type: str | None, body: kopf.Body, **_: Any) -> None:
        binding.on_event(type, body)

    return registry


async def run_binding_agent(
    binding: BindingAgent,
    namespace: str,
    *,
    health: tuple[str, int] | None = None,
    connection: kopf.ConnectionInfo | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Watch ``binding`` in ``namespace`` and keep its key file current until stopped."""
    runner = await serve_health(binding, *health, metrics=binding.metrics) if health else None
    _log.info("key agent watching CaptchaKeyBinding %s/%s", namespace, binding.name)
    try:
        await kopf.operator(
            registry=build_registry(binding, connection),
            standalone=True,
            namespaces=[namespace],
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        await binding.close()
        if runner is not None:
            await runner.cleanup()
