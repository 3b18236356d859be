"""AWS bindings end to end: real kopf agents and operator, the rig's API, a real moto server.

Covers, for ``spec.source: aws``:
- the operator learns the current version id from DescribeSecret with its own identity
  and publishes it (``status.currentVersion``, ``status.awsSecret``), Ready;
- each consumer pod's agent exchanges its projected token with STS (once), writes the
  key with its version id, and reports that id on /status;
- rotation (put-secret-value, then a rotation request): every agent fetches the new
  version after the operator announces it, an application's KeyReader sees the new key
  without a restart, and the previous id is listed as safe to revoke only when no
  consumer holds it; each agent exchanged its token once for the whole test;
- ``captchakey rotate`` (the function behind it) waits until the previous id is safe to
  revoke, and refuses ``--new-key-stdin`` for an AWS binding with the command to use;
- pinning ``spec.aws.versionId`` moves an agent back to that version; unpinning returns;
- the operator's identity without DescribeSecret (IAM enforced): Ready=False with reason
  AwsForbidden naming the secret and the action, and no version published;
- the key appears in no status, Event or /status answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import pytest

from agent import keyfile
from agent.kube import KubeApi
from agent.operator.config import AwsConfig, OperatorConfig, TLSConfig
from agent.rotation import find_binding, rotate
from agent.runtime.backoff import Backoff
from agent.sidecar.bindingagent import AgentDefaults, BindingAgent
from agent.sidecar.watch import run_binding_agent
from agent.vault import TokenAuth, VaultClient
from captchakeys import KeyReader
from tests.aws.conftest import AGENT_ACTIONS, TOKEN, TRUST
from tests.rig.helpers import free_port
from tests.rig.kube import API_AUDIENCE, RealisticKubernetes
from tests.rig.moto import ACCOUNT, REGION, MotoServer
from tests.rig.operator import SERVING_SECRET, operator_on_loopback
from tests.rig.scenario import (
    BINDINGS_PATH,
    Workload,
    eventually,
    kopf_in_thread,
    wait_status,
)

KEY_1 = "0123456789abcdef0123456789abcdef"
KEY_2 = "fedcba9876543210fedcba9876543210"
NAMESPACE = "solver-dev"


class AwsWorkload:
    """A namespace whose binding reads one AWS secret, and the role its pods assume."""

    def __init__(self, kube: RealisticKubernetes, moto: MotoServer, tmp: Path) -> None:
        self.kube, self.moto, self.tmp = kube, moto, tmp
        self.namespace = NAMESPACE
        self.environment = f"env{free_port()}"
        self.secret = f"captchaai/{self.environment}"
        self.role = moto.create_role([{"Action": AGENT_ACTIONS, "Resource": "*"}], TRUST)
        self.token_file = tmp / "aws-token"
        self.token_file.write_text(TOKEN)

    async def create_binding(self, name: str, **aws: Any) -> None:
        body = {
            "apiVersion": "captchakeys.io/v1alpha1",
            "kind": "CaptchaKeyBinding",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "environment": self.environment,
                "source": "aws",
                "aws": {
                    "secretId": self.secret,
                    "region": REGION,
                    "roleArn": self.role,
                    "field": "api_key",
                    **aws,
                },
            },
        }
        await self.kube.call("POST", BINDINGS_PATH.format(ns=NAMESPACE), body)

    async def patch(self, name: str, patch: dict[str, Any]) -> None:
        path = f"{BINDINGS_PATH.format(ns=NAMESPACE)}/{name}"
        await self.kube.call("PATCH", path, patch, content_type="application/merge-patch+json")


@pytest.fixture
def aws_workload(kube: RealisticKubernetes, moto: MotoServer, tmp_path: Path) -> AwsWorkload:
    return AwsWorkload(kube, moto, tmp_path)


@pytest.fixture
def aws_operator(
    kube: RealisticKubernetes,
    moto: MotoServer,
    aws_workload: AwsWorkload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    # The operator's own AWS identity comes from the SDK's default chain (IRSA env vars).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    config = OperatorConfig(
        environments=(aws_workload.environment,),
        status_poll_seconds=30,
        peering_name=None,
        webhook_port=free_port(),
        tls=TLSConfig(secret_name=SERVING_SECRET),
        aws=AwsConfig(accounts=(ACCOUNT,), endpoint_url=moto.url),
    )
    with operator_on_loopback(kube, config, tmp_path):
        yield


@contextlib.asynccontextmanager
async def aws_consumer(
    workload: AwsWorkload, binding: str, number: int
) -> AsyncIterator[tuple[BindingAgent, Path, int]]:
    """An agent as the webhook injects it for an AWS binding, and its pod in the rig."""
    out, port = workload.tmp / f"consumer-{number}", free_port()
    out.mkdir()
    defaults = AgentDefaults(
        vault_addr="https://unused.invalid:8200",
        out_dir=out,
        aws_token_file=workload.token_file,
        aws_endpoint_url=workload.moto.url,
        backoff=Backoff(base=0.05, cap=0.5),
        rotation_spread=0.2,
    )
    agent = BindingAgent(binding, defaults)
    token = workload.kube.issue_token(NAMESPACE, "solver", audience=API_AUDIENCE)
    connection = kopf.ConnectionInfo(server=workload.kube.api_url, token=token)

    async def main(stop: asyncio.Event, ready: asyncio.Event) -> None:
        await run_binding_agent(
            agent,
            NAMESPACE,
            health=("127.0.0.1", port),
            connection=connection,
            stop_flag=stop,
            ready_flag=ready,
        )

    threaded = kopf_in_thread(main)
    await asyncio.to_thread(threaded.__enter__)
    try:
        await create_pod(workload, f"solver-{number}", port, binding)
        yield agent, out, port
    finally:
        await asyncio.to_thread(threaded.__exit__, None, None, None)


async def create_pod(workload: AwsWorkload, name: str, port: int, binding: str) -> None:
    from tests.rig.scenario import create_consumer_pod

    # create_consumer_pod needs only the rig and the namespace of a workload.
    shim = Workload.__new__(Workload)
    shim.kube, shim.namespace = workload.kube, NAMESPACE
    await create_consumer_pod(shim, name, port, binding)


def held(out: Path) -> str | int | None:
    meta = keyfile.read_metadata(out / "api_key")
    return meta.version if meta else None


async def agent_status(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/status") as response,
    ):
        return dict(await response.json())


@pytest.mark.usefixtures("aws_operator")
async def test_rotation_rollout_and_safe_to_revoke(aws_workload: AwsWorkload) -> None:
    moto = aws_workload.moto
    _, _, first = moto.create_secret(json.dumps({"api_key": KEY_1}), name=aws_workload.secret)
    await aws_workload.create_binding("captchaai")
    status = await wait_status(aws_workload, lambda s: s.get("currentVersion") == first)
    assert status["awsSecret"] == f"{REGION}:{aws_workload.secret}"
    reachable = next(c for c in status["conditions"] if c["type"] == "VaultReachable")
    assert reachable["message"] == "AWS Secrets Manager answered"
    async with contextlib.AsyncExitStack() as stack:
        fleet = [
            await stack.enter_async_context(aws_consumer(aws_workload, "captchaai", n))
            for n in range(2)
        ]
        await eventually(lambda: all(held(out) == first for _, out, _ in fleet), 20)
        assert (await agent_status(fleet[0][2]))["version"] == first
        await wait_status(aws_workload, lambda s: (s.get("rollout") or {}).get("upToDate") == 2)
        rotated = threading.Event()
        with KeyReader(fleet[0][1] / "api_key") as reader:
            reader.on_change(lambda _key: rotated.set())
            second = moto.put_value(aws_workload.secret, json.dumps({"api_key": KEY_2}))
            stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
            await aws_workload.patch("captchaai", {"spec": {"rotation": {"requestedAt": stamp}}})
            await eventually(rotated.is_set, 20)
            assert reader.get() == KEY_2
            await eventually(lambda: reader.version == second)
        status = await wait_status(
            aws_workload, lambda s: (s.get("rollout") or {}).get("safeToRevoke") == [first]
        )
        assert all(held(out) == second for _, out, _ in fleet)
        assert status["currentVersion"] == second
        assert status["rollout"]["upToDate"] == 2
        assert status["rollout"]["versions"] == {second: 2}
        assert [agent.agent.refresher.client.logins for agent, _, _ in fleet if agent.agent] == [
            1,
            1,
        ]
        answers = [await agent_status(port) for _, _, port in fleet]
    events = await aws_workload.kube.call("GET", f"/api/v1/namespaces/{NAMESPACE}/events")
    for text in (json.dumps(status), json.dumps(answers), json.dumps(events)):
        assert KEY_1 not in text
        assert KEY_2 not in text


@pytest.mark.usefixtures("aws_operator")
async def test_pinning_a_version_id_and_unpinning(aws_workload: AwsWorkload) -> None:
    moto = aws_workload.moto
    _, _, first = moto.create_secret(json.dumps({"api_key": KEY_1}), name=aws_workload.secret)
    second = moto.put_value(aws_workload.secret, json.dumps({"api_key": KEY_2}))
    await aws_workload.create_binding("pinned", versionId=first)
    await wait_status(aws_workload, lambda s: s.get("currentVersion") == first, name="pinned")
    async with aws_consumer(aws_workload, "pinned", 0) as (_, out, _):
        await eventually(lambda: held(out) == first, 20)
        assert (out / "api_key").read_text() == KEY_1
        await aws_workload.patch("pinned", {"spec": {"aws": {"versionId": None}}})
        await eventually(lambda: held(out) == second, 20)
        assert (out / "api_key").read_text() == KEY_2


@pytest.mark.usefixtures("aws_operator")
async def test_captchakey_rotate_waits_for_the_old_id_to_be_revocable(
    aws_workload: AwsWorkload,
) -> None:
    moto = aws_workload.moto
    _, _, first = moto.create_secret(json.dumps({"api_key": KEY_1}), name=aws_workload.secret)
    await aws_workload.create_binding("rotated")
    await wait_status(aws_workload, lambda s: s.get("currentVersion") == first, name="rotated")
    kube = KubeApi.connect(aws_workload.kube.api_url, aws_workload.kube.admin_token)
    binding = await find_binding(kube, NAMESPACE, "rotated", None)
    with pytest.raises(LookupError, match="put-secret-value"):
        await rotate(kube, binding, new_key=KEY_2, vault=VaultClient("http://x", TokenAuth("t")))
    second = moto.put_value(aws_workload.secret, json.dumps({"api_key": KEY_2}))
    out = io.StringIO()
    result = await rotate(kube, binding, wait_seconds=30, out=out)
    assert result.ok, out.getvalue()
    assert (result.version, result.revocable) == (second, [first])
    assert f"version {first} is safe to revoke" in out.getvalue()


@pytest.fixture
def denied_workload(
    kube: RealisticKubernetes,
    moto_iam: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[AwsWorkload]:
    """An operator whose AWS identity may list secrets but not DescribeSecret (IAM enforced)."""
    workload = AwsWorkload(kube, moto_iam, tmp_path)
    moto_iam.create_secret(json.dumps({"api_key": KEY_1}), name=workload.secret)
    keys = moto_iam.create_user(
        f"op-{workload.environment}", [{"Action": "secretsmanager:ListSecrets", "Resource": "*"}]
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    config = OperatorConfig(
        environments=(workload.environment,),
        peering_name=None,
        webhook_port=free_port(),
        tls=TLSConfig(secret_name=SERVING_SECRET),
        aws=AwsConfig(accounts=(ACCOUNT,), endpoint_url=moto_iam.url),
    )
    with operator_on_loopback(kube, config, tmp_path):
        yield workload


async def test_operator_denied_describe_secret_says_so_and_publishes_nothing(
    denied_workload: AwsWorkload,
) -> None:
    await denied_workload.create_binding("denied")

    def forbidden(status: dict[str, Any]) -> bool:
        return any(c.get("reason") == "AwsForbidden" for c in status.get("conditions", []))

    status = await wait_status(denied_workload, forbidden, name="denied")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert "secretsmanager:DescribeSecret" in ready["message"]
    assert denied_workload.secret in ready["message"]
    assert "currentVersion" not in status
