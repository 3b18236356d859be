"""The real operator against the rig, as the chart runs it: HTTPS webhooks, probes, metrics.

The operator's tests and the bench run it the same way: in a thread with a loop of its
own (as another process would be), after the cluster's part is declared (its version,
and the webhook configurations the chart installs and the operator patches). It logs
in to OpenBao with its own Kubernetes-auth role whose policy allows ``read`` on KV
*metadata* only, as in production (:func:`operator_vault`).

Where the operator's CPU must be its own (the bench's rotation figures),
:func:`operator_process` runs the real ``captchakey operator`` command instead, with the
same configuration written to the file the chart would mount.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import requests
import requests.adapters

from agent.kube import KubeApi
from agent.operator.app import API_REQUEST_SECONDS, run_operator
from agent.operator.config import OperatorConfig, VaultConfig
from agent.operator.tls import service_names
from tests.rig.client import ApiServer
from tests.rig.helpers import free_port, stop_process, wait_until
from tests.rig.kube import RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.openbao_auth import BaoAuth, BaoRole
from tests.rig.scenario import kopf_in_thread

__all__ = [
    "OPERATOR_NS",
    "SERVING_SECRET",
    "OperatorProcess",
    "RunningOperator",
    "Webhook",
    "config_mapping",
    "operator_on_loopback",
    "operator_process",
    "operator_vault",
    "webhook_configurations",
    "webhook_session",
]

OPERATOR_NS = "captcha-system"
OPERATOR_ROLE = "captcha-key-operator"
OPERATOR_POLICY = 'path "secret/metadata/captchaai/*" { capabilities = ["read"] }\n'
WEBHOOKS = ("captcha-key-agent",)
#: The Secret the operator keeps its webhook's serving certificate and CA in.
SERVING_SECRET = "captcha-key-agent-webhook-tls"
_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_SERVING_SECRET_PATH = f"/api/v1/namespaces/{OPERATOR_NS}/secrets/{SERVING_SECRET}"
_WEBHOOK_KINDS = (
    ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations"),
    ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations"),
)
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
    """Where a running operator answers, and the CA that signs its webhook."""

    config: OperatorConfig
    url: str
    ca_file: Path
    probes_url: str
    metrics_url: str


def operator_vault(
    kube: ApiServer, openbao: OpenBaoServer, auth: BaoAuth, tmp: Path, **options: Any
) -> VaultConfig:
    """The operator's Vault settings, with its role and projected token made first.

    ``options`` are the rest of :class:`~agent.operator.config.VaultConfig`, e.g. the
    bench's ``allow_insecure_http``.
    """
    openbao.client().sys.create_or_update_policy(OPERATOR_ROLE, OPERATOR_POLICY)
    role = BaoRole(OPERATOR_ROLE, [OPERATOR_NS], [OPERATOR_ROLE], policies=[OPERATOR_ROLE])
    auth.add_role(role)
    token_file = tmp / "operator-vault-token"
    token_file.write_text(kube.issue_token(OPERATOR_NS, OPERATOR_ROLE, audience="vault"))
    return VaultConfig(
        address=openbao.addr,
        auth_mount=auth.mount,
        auth_role=OPERATOR_ROLE,
        token_file=token_file,
        **options,
    )


async def webhook_configurations(kube: RealisticKubernetes, minor: int = 31) -> None:
    """Declare the cluster's version and the chart's webhook configurations, anew.

    Configurations an earlier operator on the same rig patched are replaced, so that
    each operator starts from what the chart installs.
    """
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
    for kind, path in _WEBHOOK_KINDS:
        with contextlib.suppress(aiohttp.ClientResponseError):  # 404: none yet.
            await kube.call("DELETE", f"{_ADMISSION}/{path}/{WEBHOOKS[0]}")
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": WEBHOOKS[0]},
            "webhooks": [webhook],
        }
        await kube.call("POST", f"{_ADMISSION}/{path}", body)


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
            kube=KubeApi.connect(
                kube.api_url, kube.admin_token, request_timeout=API_REQUEST_SECONDS
            ),
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


@dataclass(frozen=True)
class Webhook:
    """Where a client reaches an operator's webhook server, and what it checks there.

    The server listens on all addresses, as in a pod, with a certificate for the
    Service's names only: a client connects to ``url`` and checks the certificate
    against ``name`` and ``ca_file``, as the API server does through the Service.
    """

    url: str
    name: str
    ca_file: Path


@dataclass
class OperatorProcess:
    """A ``captchakey operator`` process: its pid for CPU and memory, its JSON log, its ports."""

    process: subprocess.Popen[bytes]
    log: Path
    probes_url: str
    metrics_url: str
    webhook: Webhook


def config_mapping(config: OperatorConfig) -> dict[str, Any]:
    """``config`` as the chart's ``config.yaml`` says it (docs/contract.md).

    Only the settings the rig's scenarios change are written; a config that sets any
    other is refused, so that the process never runs with less than it was given.
    """
    vault = config.vault
    auth = {
        "method": vault.auth_method,
        "mount": vault.auth_mount,
        "role": vault.auth_role,
        "tokenFile": str(vault.token_file),
        "audience": vault.audience,
    }
    mapping = {
        "vault": {
            "address": vault.address,
            "auth": auth,
            "allowedAddresses": list(vault.allowed_addresses),
            "allowedAudiences": list(vault.allowed_audiences),
            "allowInsecureHttp": vault.allow_insecure_http,
        },
        "environments": list(config.environments),
        "statusPollSeconds": int(config.status_poll_seconds),
        "vaultReadsPerSecond": int(config.vault_reads_per_second),
        "peering": {"name": config.peering_name or ""},
        "webhook": {
            "port": config.webhook_port,
            "tls": {"mode": config.tls.mode, "secretName": config.tls.secret_name},
        },
        "log": {"level": config.log_level, "format": config.log_format},
    }
    if OperatorConfig.from_mapping(mapping) != config:
        raise ValueError(f"the operator config sets more than config_mapping writes: {config}")
    return mapping


@contextlib.contextmanager
def operator_process(
    kube: ApiServer,
    config: OperatorConfig,
    tmp: Path,
    *,
    env: Mapping[str, str] | None = None,
    seconds: float = 30.0,
) -> Iterator[OperatorProcess]:
    """Run ``captchakey operator`` against the rig until the block ends; ready when yielded.

    The cluster's part must be declared first (:func:`webhook_configurations`, or
    ``python -m tests.rig.serve --for-operator``). It reads ``config`` from a file, the
    rig's admin identity from a kubeconfig, and logs to ``tmp/operator.log``; ``env``
    adds to this process's environment (say, a ``PYTHONPATH`` for the tree under test).
    """
    config_file = tmp / "operator-config.yaml"
    config_file.write_text(json.dumps(config_mapping(config)))  # JSON is YAML.
    kubeconfig = kube.kubeconfig(tmp / "operator.kubeconfig")
    probes, metrics = free_port(), free_port()
    command = [
        *(str(Path(sys.executable).with_name("captchakey")), "operator"),
        *("--config", str(config_file)),
        *("--namespace", OPERATOR_NS),
        *("--health-addr", f"127.0.0.1:{probes}"),
        *("--metrics-addr", f"127.0.0.1:{metrics}"),
    ]
    log = tmp / "operator.log"
    with log.open("wb") as sink:
        environment = {**os.environ, **(env or {}), "KUBECONFIG": str(kubeconfig)}
        process = subprocess.Popen(command, env=environment, stdout=sink, stderr=sink)
    try:
        running = OperatorProcess(
            process,
            log,
            f"http://127.0.0.1:{probes}",
            f"http://127.0.0.1:{metrics}/metrics",
            Webhook(
                f"https://127.0.0.1:{config.webhook_port}",
                service_names(config.webhook_service, OPERATOR_NS)[2],  # name.namespace.svc
                tmp / "webhook-ca.crt",
            ),
        )
        wait_until(lambda: _ready(running), seconds, step=0.05)
        asyncio.run(_wait_for_ca(kube, running.webhook.ca_file))
        _wait_for_port(config.webhook_port)
        yield running
    finally:
        stop_process(process)


def webhook_session(webhook: Webhook) -> requests.Session:
    """A session that reaches ``webhook`` on loopback as the API server would.

    It verifies the serving certificate against the operator's CA and the Service's name
    (sent as SNI too), though it connects to ``127.0.0.1``: what the certificate names
    is checked, not relaxed. The environment is not consulted: its CA bundle would
    override the session's CA, and its proxies have no business with loopback.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = str(webhook.ca_file)
    session.mount(webhook.url, _ServiceNameAdapter(webhook.name))
    return session


class _ServiceNameAdapter(requests.adapters.HTTPAdapter):
    """Connections that present and check ``name``, whatever address they connect to."""

    def __init__(self, name: str) -> None:
        self._name = name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(
            *args, **kwargs, server_hostname=self._name, assert_hostname=self._name
        )


def _ready(running: OperatorProcess) -> bool:
    """Whether ``/readyz`` answers 200; an operator that exited is a failure, with its log."""
    if running.process.poll() is not None:
        tail = running.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the operator exited ({running.process.returncode}): {tail}")
    try:
        with urllib.request.urlopen(f"{running.probes_url}/readyz", timeout=1) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:  # not listening yet, or 503: the webhook server is not up yet.
        return False


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


async def _wait_for_ca(kube: ApiServer, ca_file: Path) -> None:
    """The CA the operator generated for its webhook, once it stored the serving Secret."""
    async with asyncio.timeout(10):
        while True:
            try:
                secret = await kube.call("GET", _SERVING_SECRET_PATH)
            except aiohttp.ClientResponseError:  # not created yet.
                await asyncio.sleep(0.05)
                continue
            ca_file.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
            return
