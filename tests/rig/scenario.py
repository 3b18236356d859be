"""Building blocks for tests that run our kopf processes against the rig and OpenBao.

A :class:`Workload` is one namespace + service account with a Vault role and policy on
its own environment's path, and the two tokens a pod would have: the audience-bound one
for Vault (written to a file, as the projected volume does) and one for the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import kopf

from agent.runtime.backoff import Backoff
from agent.sidecar.bindingagent import AgentDefaults, BindingAgent
from agent.sidecar.watch import run_binding_agent
from tests.rig.client import ApiServer
from tests.rig.identity import API_AUDIENCE
from tests.rig.openbao import OpenBaoServer
from tests.rig.openbao_auth import BaoAuth, BaoRole

BINDINGS_PATH = "/apis/captchakeys.io/v1alpha1/namespaces/{ns}/captchakeybindings"


async def eventually(predicate: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait until ``predicate()`` holds; fail the test with a clear message otherwise.

    The bound only ends a failing test: in-process agents share one interpreter on two
    cores, and a loaded machine must not turn a slow pass into a failure.
    """
    try:
        async with asyncio.timeout(seconds):
            while not predicate():  # noqa: ASYNC110 - state owned by other tasks/threads.
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"condition not met within {seconds}s: {predicate}") from None


class BindingsAt(Protocol):
    """Where bindings live: the rig and a namespace (a :class:`Workload`, or a test's own)."""

    @property
    def kube(self) -> ApiServer: ...

    @property
    def namespace(self) -> str: ...


async def binding_status(where: BindingsAt, name: str = "captchaai") -> dict[str, Any]:
    """A binding's status as the API holds it now (empty before the operator wrote one)."""
    body = await where.kube.call("GET", f"{BINDINGS_PATH.format(ns=where.namespace)}/{name}")
    return dict(body.get("status") or {})


async def wait_status(
    where: BindingsAt,
    predicate: Callable[[dict[str, Any]], object],
    seconds: float = 30.0,
    *,
    name: str = "captchaai",
) -> dict[str, Any]:
    """A binding's status once ``predicate`` holds; the last one seen in the failure.

    Polled, as ``kubectl wait`` does; the bound only ends a failing test, as in
    :func:`eventually`.
    """
    latest: dict[str, Any] = {}
    try:
        async with asyncio.timeout(seconds):
            while not predicate(latest := await binding_status(where, name)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"status never matched; last seen: {latest}") from None
    return latest


@dataclass
class Workload:
    """A namespace, its service account, its environment and its Vault access."""

    kube: ApiServer
    openbao: OpenBaoServer
    auth: BaoAuth
    tmp: Path
    namespace: str
    service_account: str = "solver"
    environment: str = ""

    def __post_init__(self) -> None:
        self.environment = self.environment or f"env-{uuid.uuid4().hex[:8]}"
        self.role = f"worker-{self.environment}"
        policy = (
            f'path "secret/data/captchaai/{self.environment}" {{ capabilities = ["read"] }}\n'
            f'path "secret/metadata/captchaai/{self.environment}" {{ capabilities = ["read"] }}\n'
        )
        self.openbao.client().sys.create_or_update_policy(self.role, policy)
        self.auth.add_role(
            BaoRole(self.role, [self.namespace], [self.service_account], policies=[self.role])
        )
        self.token_file = self.tmp / f"{self.environment}-vault-token"
        self.token_file.write_text(
            self.kube.issue_token(self.namespace, self.service_account, audience="vault")
        )

    @property
    def path(self) -> str:
        return f"captchaai/{self.environment}"

    def put_key(self, value: str) -> int:
        return self.openbao.put_key(self.path, value)

    def api_token(self) -> str:
        return self.kube.issue_token(self.namespace, self.service_account, audience=API_AUDIENCE)

    def binding(self, name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "captchakeys.io/v1alpha1",
            "kind": "CaptchaKeyBinding",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "environment": self.environment,
                "vault": {
                    "auth": {
                        "method": self.auth.method,
                        "mount": self.auth.mount,
                        "role": self.role,
                    }
                },
                **spec,
            },
        }

    async def create_binding(self, name: str, **spec: Any) -> dict[str, Any]:
        body = self.binding(name, **spec)
        created: dict[str, Any] = await self.kube.call(
            "POST", BINDINGS_PATH.format(ns=self.namespace), body
        )
        return created

    async def patch_binding(
        self, name: str, patch: dict[str, Any], *, status: bool = False
    ) -> None:
        path = f"{BINDINGS_PATH.format(ns=self.namespace)}/{name}" + ("/status" if status else "")
        await self.kube.call("PATCH", path, patch, content_type="application/merge-patch+json")

    async def get_binding(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.kube.call(
            "GET", f"{BINDINGS_PATH.format(ns=self.namespace)}/{name}"
        )
        return body

    async def delete_binding(self, name: str) -> None:
        await self.kube.call("DELETE", f"{BINDINGS_PATH.format(ns=self.namespace)}/{name}")


@contextlib.contextmanager
def kopf_in_thread(
    main: Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]], seconds: float = 15
) -> Iterator[None]:
    """Run a kopf process (agent or operator) in a thread with an event loop of its own.

    As a real pod's process would: kopf treats every task created in its loop after it
    started as its own and cancels them on exit, so tests and other kopf instances must
    not share its loop. ``main(stop_flag, ready_flag)`` runs until the stop flag is set.
    """
    loop = asyncio.new_event_loop()
    stop, started, ready = asyncio.Event(), asyncio.Event(), threading.Event()

    async def serve() -> None:
        waiter = asyncio.create_task(started.wait())
        waiter.add_done_callback(lambda _: ready.set())
        await main(stop, started)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(seconds), "the kopf process did not start"
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(seconds)
        assert not thread.is_alive(), "the kopf process did not stop"
        loop.close()


@contextlib.asynccontextmanager
async def running_agent(
    workload: Workload,
    binding: str,
    out_dir: Path,
    *,
    token: str | None = None,
    health: tuple[str, int] | None = None,
    spread: float = 0.05,
) -> AsyncIterator[BindingAgent]:
    """A binding agent as the sidecar runs it, in a thread of its own; stopped on exit."""
    out_dir.mkdir(parents=True, exist_ok=True)
    defaults = AgentDefaults(
        vault_addr=workload.openbao.addr,
        out_dir=out_dir,
        token_file=workload.token_file,
        backoff=Backoff(base=0.05, cap=0.5),
        rotation_spread=spread,
    )
    connection = kopf.ConnectionInfo(
        server=workload.kube.api_url, token=token or workload.api_token()
    )
    agent = BindingAgent(binding, defaults)

    async def main(stop: asyncio.Event, ready: asyncio.Event) -> None:
        await run_binding_agent(
            agent,
            workload.namespace,
            health=health,
            connection=connection,
            stop_flag=stop,
            ready_flag=ready,
        )

    threaded = kopf_in_thread(main)
    await asyncio.to_thread(threaded.__enter__)
    try:
        yield agent
    finally:
        await asyncio.to_thread(threaded.__exit__, None, None, None)


async def create_consumer_pod(workload: Workload, name: str, port: int, binding: str) -> None:
    """A running pod as the webhook leaves it: opted in, its agent answering on ``port``."""
    pods = f"/api/v1/namespaces/{workload.namespace}/pods"
    agent = {
        "name": "captcha-key-agent",
        "image": "captcha-key-agent",
        "restartPolicy": "Always",
        "ports": [{"name": "ckb-agent", "containerPort": port}],
    }
    metadata = {
        "name": name,
        "namespace": workload.namespace,
        "labels": {"captchakeys.io/inject": "true"},
        "annotations": {"captchakeys.io/binding": binding},
    }
    spec = {"initContainers": [agent], "containers": [{"name": "app", "image": "solver"}]}
    await workload.kube.call(
        "POST", pods, {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    )
    await workload.kube.call(
        "PATCH",
        f"{pods}/{name}/status",
        {"status": {"phase": "Running", "podIP": "127.0.0.1"}},
        content_type="application/merge-patch+json",
    )


async def delete_pod(workload: Workload, name: str) -> None:
    await workload.kube.call("DELETE", f"/api/v1/namespaces/{workload.namespace}/pods/{name}")
