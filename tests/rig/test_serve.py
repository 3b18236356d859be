"""The rig and the operator in processes of their own, as the bench runs them.

Aspects covered:

- ``python -m tests.rig.serve`` serves the rig's API to plain Kubernetes HTTP, with the
  tokens its control URL issues: an unknown token gets 401, OpenBao's Kubernetes auth
  logs in with an issued one through the rig's TokenReview;
- its timings: each request other than a watch with when it was received and answered,
  each watch event with when its write was stored and when it was written to the
  stream, and not the events a watch replays of what was there before it began;
- ``--for-operator`` declares the cluster version and the chart's webhook
  configurations; SIGTERM stops the runner cleanly;
- ``captchakey operator`` run by :func:`~tests.rig.operator.operator_process` against
  it publishes a binding's version in its status, logging in to OpenBao with its own
  metadata-only identity, and answers admission on loopback under the Service's name
  its certificate is for (and only under it); a config with a setting the process's
  file would not carry is refused rather than run with less.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import requests

from agent.operator.config import InjectionConfig, OperatorConfig, TLSConfig
from tests.rig.apiserver import admission_review, as_admitted
from tests.rig.helpers import free_port
from tests.rig.identity import API_AUDIENCE
from tests.rig.openbao import OpenBaoServer
from tests.rig.openbao_auth import BaoRole, configure_kubernetes_auth
from tests.rig.operator import (
    SERVING_SECRET,
    OperatorProcess,
    config_mapping,
    operator_process,
    operator_vault,
    webhook_session,
)
from tests.rig.scenario import Workload, wait_status
from tests.rig.serve import RigProcess, Timings

CONFIGMAPS = "/api/v1/namespaces/dev/configmaps"
MERGE = "application/merge-patch+json"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[RigProcess]:
    with RigProcess(for_operator=True, log=tmp_path / "rig.log") as served:
        yield served


def configmap(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


async def delivered(rig: RigProcess, since: float) -> Timings:
    """The timings once an event is among them: the rig notes one after writing it."""
    async with asyncio.timeout(5):
        while not (timings := rig.timings(since)).delivered:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.01)
    return timings


async def test_the_rig_serves_plain_kubernetes_http_to_the_tokens_it_issues(
    rig: RigProcess,
) -> None:
    token = rig.issue_token("dev", "solver", audience=API_AUDIENCE)
    await rig.call("POST", CONFIGMAPS, configmap("issued"), token=token)
    listed = await rig.call("GET", CONFIGMAPS, token=token)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["issued"]
    vault_only = rig.issue_token("dev", "solver", audience="vault")
    with pytest.raises(aiohttp.ClientResponseError) as refused:
        await rig.call("GET", CONFIGMAPS, token=vault_only)
    assert refused.value.status == 401


def test_openbao_logs_in_through_the_rigs_token_review(
    rig: RigProcess, openbao: OpenBaoServer
) -> None:
    auth = configure_kubernetes_auth(openbao, rig, mount=f"k8s-{uuid.uuid4().hex[:10]}")
    try:
        auth.add_role(BaoRole("solver", ["dev"], ["solver"]))
        client = auth.login("solver", rig.issue_token("dev", "solver", audience="vault"))
        assert client.is_authenticated()
    finally:
        auth.disable()


async def test_timings_say_when_each_request_and_event_was_served(rig: RigProcess) -> None:
    await rig.call("POST", CONFIGMAPS, configmap("before"))
    since = time.time()
    headers = {"Authorization": f"Bearer {rig.admin_token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{rig.api_url}{CONFIGMAPS}?watch=true") as watch,
    ):
        assert json.loads(await watch.content.readline())["type"] == "ADDED"  # the replay
        await rig.call("PATCH", f"{CONFIGMAPS}/before", {"data": {"a": "b"}}, content_type=MERGE)
        assert json.loads(await watch.content.readline())["type"] == "MODIFIED"
        timings = await delivered(rig, since)
    patch = next(s for s in timings.served if s.method == "PATCH")
    assert patch.path == f"{CONFIGMAPS}/before"
    assert since <= patch.received <= patch.answered
    assert not any(s.path == CONFIGMAPS and s.method == "GET" for s in timings.served)  # watch
    [event] = timings.delivered  # the live change only, not the replay.
    assert (event.watch, event.type) == (CONFIGMAPS, "MODIFIED")
    assert patch.received <= event.changed <= event.written


async def test_for_operator_the_cluster_version_and_webhook_configurations_are_there(
    rig: RigProcess,
) -> None:
    assert (await rig.call("GET", "/version"))["gitVersion"] == "v1.31.0"
    admission = "/apis/admissionregistration.k8s.io/v1"
    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        found = await rig.call("GET", f"{admission}/{plural}/captcha-key-agent")
        assert found["webhooks"][0]["name"] == "pods.captchakeys.io"


def test_sigterm_stops_the_rig_cleanly(tmp_path: Path) -> None:
    with RigProcess(log=tmp_path / "rig.log") as served:
        assert served.returncode is None
    assert served.returncode == 0, (tmp_path / "rig.log").read_text()


class ServedOperator(NamedTuple):
    workload: Workload
    version: int  # of the key in Vault when the operator started
    operator: OperatorProcess


@pytest.fixture
def served_operator(
    rig: RigProcess, openbao: OpenBaoServer, tmp_path: Path
) -> Iterator[ServedOperator]:
    """``captchakey operator`` against the rig process, one binding and its key in place."""
    auth = configure_kubernetes_auth(openbao, rig, mount=f"k8s-{uuid.uuid4().hex[:10]}")
    try:
        workload = Workload(rig, openbao, auth, tmp_path, namespace="solver")
        version = workload.put_key("k" * 32)
        asyncio.run(workload.create_binding("captchaai"))
        vault = operator_vault(rig, openbao, auth, tmp_path, allow_insecure_http=True)
        config = OperatorConfig(
            vault=vault,
            environments=(workload.environment,),
            peering_name=None,
            webhook_port=free_port(),
            tls=TLSConfig(secret_name=SERVING_SECRET),
        )
        with operator_process(rig, config, tmp_path) as operator:
            yield ServedOperator(workload, version, operator)
    finally:
        auth.disable()


def test_the_operator_process_publishes_a_bindings_version(
    served_operator: ServedOperator,
) -> None:
    workload, version, operator = served_operator
    status = asyncio.run(wait_status(workload, lambda s: s.get("currentVersion") == version))
    assert operator.process.poll() is None
    assert status["currentVersion"] == version


def test_the_operator_process_answers_admission_under_its_service_name(
    served_operator: ServedOperator,
) -> None:
    webhook = served_operator.operator.webhook
    review = admission_review(as_admitted(_opted_in_pod("solver")))
    answer = webhook_session(webhook).post(f"{webhook.url}/mutate-pods", json=review, timeout=10)
    with pytest.raises(requests.exceptions.SSLError, match=r"doesn't match|mismatch"):
        requests.post(
            f"{webhook.url}/mutate-pods", json=review, timeout=10, verify=str(webhook.ca_file)
        )
    response = answer.json()["response"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert webhook.name == "captcha-key-agent-webhook.captcha-system.svc"


def _opted_in_pod(namespace: str) -> dict[str, Any]:
    metadata = {
        "name": "solver-0",
        "namespace": namespace,
        "labels": {"captchakeys.io/inject": "true"},
        "annotations": {"captchakeys.io/binding": "captchaai"},
    }
    spec = {"containers": [{"name": "app", "image": "registry.example/solver:1"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def test_a_config_the_process_file_would_not_carry_is_refused() -> None:
    config = OperatorConfig(injection=dataclasses.replace(InjectionConfig(), image="other:1"))
    with pytest.raises(ValueError, match="more than config_mapping writes"):
        config_mapping(config)
    assert OperatorConfig.from_mapping(config_mapping(OperatorConfig())) == OperatorConfig()
