"""A running operator for integration tests: the rig's API, HTTPS webhooks, real OpenBao.

The operator logs in to OpenBao with its own Kubernetes-auth role whose policy allows
``read`` on KV *metadata* only, as in production; tests that need a consumer run key
agents beside it (``tests.rig.scenario.running_agent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import kopf
import pytest

from agent.kube import KubeApi
from agent.operator.app import run_operator
from agent.operator.config import OperatorConfig, TLSConfig, VaultConfig
from tests.rig.helpers import free_port
from tests.rig.kube import BaoAuth, BaoRole, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.scenario import Workload, kopf_in_thread

OPERATOR_NS = "captcha-system"
OPERATOR_POLICY = 'path "secret/metadata/captchaai/*" { capabilities = ["read"] }\n'
WEBHOOKS = ("captcha-key-agent",)
KUBERNETES_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass
class RunningOperator:
    config: OperatorConfig
    url: str
    ca_file: Path
    probes_url: str
    metrics_url: str


@pytest.fixture
def workload(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> Workload:
    return Workload(kube, openbao, kube_openbao, tmp_path, namespace="solver-dev")


async def webhook_configurations(kube: RealisticKubernetes, minor: int = 31) -> None:
    version = {**KUBERNETES_VERSION, "minor": str(minor), "gitVersion": f"v1.{minor}.0"}
    for path in ("/version", "/version/"):  # the official client asks for the latter.
        kube[f"get {path}"] << version
    service = {"name": "captcha-key-agent-webhook", "namespace": OPERATOR_NS}
    webhook = {
        "name": "pods.captchakeys.io",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": service},
    }
    for kind, path in (
        ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations"),
        ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations"),
    ):
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": WEBHOOKS[0]},
            "webhooks": [webhook],
        }
        await kube.call("POST", f"/apis/admissionregistration.k8s.io/v1/{path}", body)


@pytest.fixture
def operator(
    kube: RealisticKubernetes,
    openbao: OpenBaoServer,
    kube_openbao: BaoAuth,
    workload: Workload,
    tmp_path: Path,
) -> Iterator[RunningOperator]:
    """The operator in a thread of its own with its own loop, as another process would be."""
    role = "captcha-key-operator"
    openbao.client().sys.create_or_update_policy(role, OPERATOR_POLICY)
    kube_openbao.add_role(BaoRole(role, [OPERATOR_NS], [role], policies=[role]))
    token_file = tmp_path / "operator-vault-token"
    token_file.write_text(kube.issue_token(OPERATOR_NS, role, audience="vault"))
    port = free_port()
    config = OperatorConfig(
        vault=VaultConfig(
            address=openbao.addr,
            auth_mount=kube_openbao.mount,
            auth_role=role,
            token_file=token_file,
        ),
        environments=(workload.environment, "prod"),
        status_poll_seconds=30,
        peering_name=None,
        webhook_port=port,
        tls=TLSConfig(secret_name="captcha-key-agent-webhook-tls"),
    )

    with operator_on_loopback(kube, config, tmp_path) as running:
        yield running


@contextlib.contextmanager
def operator_on_loopback(
    kube: RealisticKubernetes, config: OperatorConfig, tmp_path: Path, *, minor: int = 31
) -> Iterator[RunningOperator]:
    """Run the operator against the rig until the block ends: HTTPS webhooks, probes, metrics.

    Its webhook configurations and the cluster version are declared first, as the chart and
    the cluster would provide them; the yielded object knows the CA that signs the webhook.
    """
    asyncio.run(webhook_configurations(kube, minor))
    probes, metrics = free_port(), free_port()

    async def main(stop: asyncio.Event, ready: asyncio.Event) -> None:
        await run_operator(
            config,
            OPERATOR_NS,
            kube=KubeApi.connect(kube.api_url, kube.admin_token),
            connection=kopf.ConnectionInfo(server=kube.api_url, token=kube.admin_token),
            webhook_host="127.0.0.1",
            extra_names=("127.0.0.1",),
            stop_flag=stop,
            ready_flag=ready,
            probes=("127.0.0.1", probes),
            metrics_addr=("127.0.0.1", metrics),
        )

    with kopf_in_thread(main):
        ca_file = tmp_path / "webhook-ca.crt"
        asyncio.run(_wait_for_ca(kube, ca_file))
        _wait_for_port(config.webhook_port)
        yield RunningOperator(
            config,
            f"https://127.0.0.1:{config.webhook_port}",
            ca_file,
            probes_url=f"http://127.0.0.1:{probes}",
            metrics_url=f"http://127.0.0.1:{metrics}/metrics",
        )


def _wait_for_port(port: int, seconds: float = 10.0) -> None:
    """kopf reports ready before its webhook server listens: wait for the socket."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        else:
            return


async def _wait_for_ca(kube: RealisticKubernetes, ca_file: Path) -> None:
    import base64

    async with asyncio.timeout(10):
        while True:
            try:
                secret = await kube.call(
                    "GET", f"/api/v1/namespaces/{OPERATOR_NS}/secrets/captcha-key-agent-webhook-tls"
                )
            except aiohttp.ClientResponseError:  # not created yet.
                await asyncio.sleep(0.05)
                continue
            ca_file.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
            return
