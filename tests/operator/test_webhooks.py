"""The operator's admission webhooks over real HTTPS, as the API server calls them.

Covers:
- TLS: the operator generated a CA and serving certificate, stored them in a Secret, wrote
  the CA into both webhook configurations' caBundle, and serves with it (requests verify
  against that CA only);
- mutation: the returned JSON patch, applied to the pod, injects the agent once for an
  opted-in pod (one container, several, a containers subset, existing init containers and
  volumes, a Job pod); re-admission of an injected pod changes nothing; a pod that did not
  opt in is allowed untouched; each bad annotation is denied with its message (among them
  a containers list naming no container, and mount paths with NUL or newline); the agent
  is given the operator's Vault policy (addresses, audiences, http); a binding whose
  token audience the policy refuses gets no pod injected (no token minted for it);
- validation: a good binding is allowed; a binding for an environment the operator does not
  serve, or a path outside its prefix, is denied with a message saying what to fix;
- a cluster older than 1.29 (no native sidecars): opted-in pods are refused with the reason;
- an API server that accepts the read of a binding the operator's watch has not seen and
  never answers it: the pod is refused, naming the binding and saying the API server did
  not answer in half the webhook's ``timeoutSeconds``, long before the webhook would time
  out (no wait without end).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import requests

from agent.contract.pod import AGENT_CONTAINER
from agent.operator.config import OperatorConfig, VaultConfig
from tests.rig.helpers import free_port
from tests.rig.kube import RealisticKubernetes
from tests.rig.operator import OPERATOR_NS, SERVING_SECRET, RunningOperator, operator_on_loopback
from tests.rig.scenario import BINDINGS_PATH, Workload


def review(
    kind: str, resource: tuple[str, str, str], obj: dict[str, Any], operation: str = "CREATE"
) -> dict[str, Any]:
    group, version, plural = resource
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": plural},
            "operation": operation,
            "namespace": obj["metadata"].get("namespace"),
            "name": obj["metadata"].get("name"),
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
        },
    }


async def admit(op: RunningOperator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    def post() -> dict[str, Any]:
        response = requests.post(f"{op.url}{path}", json=body, verify=str(op.ca_file), timeout=10)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()["response"]
        return answer

    answer = await asyncio.to_thread(post)
    assert answer["uid"] == body["request"]["uid"]
    return answer


async def mutate(op: RunningOperator, pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    answer = await admit(op, "/mutate-pods", review("Pod", ("", "v1", "pods"), pod))
    if not answer.get("allowed") or "patch" not in answer:
        return answer, pod
    assert answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    return answer, jsonpatch.apply_patch(copy.deepcopy(pod), patch)


def pod(
    workload: Workload, *containers: str, opted_in: bool = True, **annotations: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"solver-{uuid.uuid4().hex[:6]}",
            "namespace": workload.namespace,
            "labels": {"captchakeys.io/inject": "true"} if opted_in else {"app": "solver"},
            "annotations": {"captchakeys.io/binding": "captchaai", **annotations},
        },
        "spec": {"containers": [{"name": c, "image": "solver:1"} for c in containers or ("app",)]},
    }


async def test_tls_is_generated_stored_and_published(
    operator: RunningOperator, kube: RealisticKubernetes
) -> None:
    ca = operator.ca_file.read_bytes()
    for path in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        config = await kube.call(
            "GET", f"/apis/admissionregistration.k8s.io/v1/{path}/captcha-key-agent"
        )
        assert base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]) == ca
    with pytest.raises(requests.exceptions.SSLError):
        await asyncio.to_thread(requests.post, f"{operator.url}/mutate-pods", json={}, timeout=5)


async def test_opted_in_pod_gets_the_agent_once(
    operator: RunningOperator, workload: Workload
) -> None:
    await workload.create_binding("captchaai", file={"name": "captcha.key"})
    answer, injected = await mutate(operator, pod(workload, "app", "worker"))
    assert answer["allowed"]
    init = injected["spec"]["initContainers"]
    assert [c["name"] for c in init] == [AGENT_CONTAINER]
    assert init[0]["restartPolicy"] == "Always"
    assert init[0]["args"] == ["agent", "--binding", "captchaai"]
    for container in injected["spec"]["containers"]:
        assert {
            "name": "CAPTCHAAI_KEY_FILE",
            "value": "/var/run/captchaai/captcha.key",
        } in container["env"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "captchaai-key")
        assert mount["readOnly"] is True
    again, reinjected = await mutate(operator, injected)
    assert again["allowed"]
    assert reinjected == injected


async def test_the_agent_is_given_the_vault_policy(
    operator: RunningOperator, workload: Workload
) -> None:
    await workload.create_binding("captchaai")
    _, injected = await mutate(operator, pod(workload, "app"))
    env = {e["name"]: e.get("value") for e in injected["spec"]["initContainers"][0]["env"]}
    assert env["CAPTCHAKEY_ALLOWED_VAULT_ADDRS"] == operator.config.vault.address
    assert env["CAPTCHAKEY_ALLOWED_AUDIENCES"] == "vault"
    assert env["CAPTCHAKEY_ALLOW_INSECURE_HTTP"] == "false"


async def test_no_token_is_minted_for_an_audience_the_policy_refuses(
    operator: RunningOperator, workload: Workload
) -> None:
    # The rig, like a cluster without the validating webhook, stores any binding.
    await workload.create_binding(
        "captchaai",
        vault={"auth": {"role": workload.role, "audience": "https://kubernetes.default.svc"}},
    )
    answer, _ = await mutate(operator, pod(workload, "app"))
    assert not answer["allowed"]
    assert (
        "spec.vault.auth.audience 'https://kubernetes.default.svc' is not allowed: use one of vault"
        in answer["status"]["message"]
    )


async def test_no_api_server_token_is_minted_for_sts_either(
    operator: RunningOperator, workload: Workload
) -> None:
    body = workload.binding("captchaai")
    body["spec"].pop("vault")
    body["spec"].update(
        source="aws",
        aws={
            "secretId": "captchaai/{environment}",
            "region": "eu-west-1",
            "roleArn": "arn:aws:iam::123456789012:role/captchakey-dev",
            "audience": "https://kubernetes.default.svc.cluster.local",
        },
    )
    await workload.kube.call(
        "POST",
        f"/apis/captchakeys.io/v1alpha1/namespaces/{workload.namespace}/captchakeybindings",
        body,
    )
    answer, _ = await mutate(operator, pod(workload, "app"))
    assert not answer["allowed"]
    assert (
        "spec.aws.audience 'https://kubernetes.default.svc.cluster.local' is the Kubernetes"
        in (answer["status"]["message"])
    )


async def test_containers_subset_and_existing_init_containers(
    operator: RunningOperator, workload: Workload
) -> None:
    await workload.create_binding("captchaai")
    original = pod(workload, "app", "proxy", **{"captchakeys.io/containers": "app"})
    original["spec"]["initContainers"] = [{"name": "migrate", "image": "migrate:1"}]
    original["spec"]["volumes"] = [{"name": "cache", "emptyDir": {}}]
    original["spec"]["restartPolicy"] = "Never"  # a Job's pod
    _, injected = await mutate(operator, original)
    assert [c["name"] for c in injected["spec"]["initContainers"]] == [AGENT_CONTAINER, "migrate"]
    assert "cache" in [v["name"] for v in injected["spec"]["volumes"]]
    app, proxy = injected["spec"]["containers"]
    assert any(m["name"] == "captchaai-key" for m in app["volumeMounts"])
    assert proxy == original["spec"]["containers"][1]


async def test_pod_that_did_not_opt_in_is_untouched(
    operator: RunningOperator, workload: Workload
) -> None:
    original = pod(workload, opted_in=False)
    answer, result = await mutate(operator, original)
    assert answer["allowed"]
    assert "patch" not in answer
    assert result == original


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"captchakeys.io/binding": "nope"}, "CaptchaKeyBinding 'nope'"),
        ({"captchakeys.io/containers": "sidecar"}, "names sidecar, which the pod does not have"),
        ({"captchakeys.io/mount-path": "/etc/captcha"}, "system path /etc"),
        ({"captchakeys.io/containers": ",,,"}, "',,,' names no container: list the containers"),
        ({"captchakeys.io/containers": " , "}, "names no container"),
        (
            {"captchakeys.io/mount-path": "/var/run/captchaai\x00/x"},
            "contains the control character '\\x00' (at position 18)",
        ),
        (
            {"captchakeys.io/mount-path": "/var/run/captchaai\n"},
            "contains the control character '\\n' (at position 18)",
        ),
        ({"captchakeys.io/binding": ""}, "no captchakeys.io/binding annotation"),
    ],
)
async def test_bad_annotations_are_denied_with_the_fix(
    operator: RunningOperator, workload: Workload, annotations: dict[str, str], message: str
) -> None:
    await workload.create_binding("captchaai")
    answer, _ = await mutate(operator, pod(workload, **annotations))
    assert not answer["allowed"]
    assert message in answer["status"]["message"]


async def test_binding_validation(operator: RunningOperator, workload: Workload) -> None:
    resource = ("captchakeys.io", "v1alpha1", "captchakeybindings")
    good = workload.binding("captchaai")
    answer = await admit(
        operator, "/validate-captchakeybindings", review("CaptchaKeyBinding", resource, good)
    )
    assert answer["allowed"]
    other = workload.binding("other")
    other["spec"]["environment"] = "qa"
    answer = await admit(
        operator, "/validate-captchakeybindings", review("CaptchaKeyBinding", resource, other)
    )
    assert not answer["allowed"]
    assert "'qa' is not one of the environments" in answer["status"]["message"]
    escape = workload.binding("escape", kv={"path": "captchaai/prod"})
    answer = await admit(
        operator, "/validate-captchakeybindings", review("CaptchaKeyBinding", resource, escape)
    )
    assert not answer["allowed"]
    assert "outside" in answer["status"]["message"]


async def test_operator_namespace_secret_holds_the_chain(
    operator: RunningOperator, kube: RealisticKubernetes
) -> None:
    secret = await kube.call("GET", f"/api/v1/namespaces/{OPERATOR_NS}/secrets/{SERVING_SECRET}")
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}  # no CA private key
    assert Path(operator.ca_file).read_bytes() == base64.b64decode(secret["data"]["ca.crt"])


def test_clusters_without_native_sidecars_are_refused_clearly(
    kube: RealisticKubernetes, workload: Workload, tmp_path: Path
) -> None:
    asyncio.run(workload.create_binding("captchaai"))
    config = OperatorConfig(
        vault=VaultConfig(address=workload.openbao.addr),
        environments=(workload.environment,),
        peering_name=None,
        webhook_port=free_port(),
    )
    with operator_on_loopback(kube, config, tmp_path, minor=28) as old_cluster:
        answer, _ = asyncio.run(mutate(old_cluster, pod(workload)))
    assert not answer["allowed"]
    assert "runs Kubernetes 1.28" in answer["status"]["message"]
    assert "needs >= 1.29" in answer["status"]["message"]


def test_a_silent_api_server_is_a_refusal_within_the_webhook_timeout(
    kube: RealisticKubernetes, workload: Workload, tmp_path: Path
) -> None:
    """The rig accepts the operator's read of the binding and never answers it."""
    config = OperatorConfig(
        vault=VaultConfig(address=workload.openbao.addr),
        environments=(workload.environment,),
        peering_name=None,
        webhook_port=free_port(),
        webhook_timeout_seconds=4,
    )
    released = threading.Event()
    path = f"{BINDINGS_PATH.format(ns=workload.namespace)}/captchaai"
    kube[f"get {path}"] << (lambda: asyncio.to_thread(released.wait, 60))
    with operator_on_loopback(kube, config, tmp_path) as running:
        started = time.monotonic()
        try:
            answer, _ = asyncio.run(mutate(running, pod(workload)))
        finally:
            released.set()
        elapsed = time.monotonic() - started
    assert elapsed < 10  # the held read would wait 60 s; the webhook must not.
    assert not answer["allowed"]
    assert answer["status"]["code"] == 504
    message = answer["status"]["message"]
    assert "cannot look up CaptchaKeyBinding 'captchaai'" in message
    assert f"in namespace {workload.namespace!r}" in message
    assert "the Kubernetes API server did not answer in 2 s" in message
