"""Injection for an AWS binding: the pod's agent gets a token for STS, and no Vault token.

Covers:
- ``spec.source: aws``: a projected service-account token with the binding's audience
  (default sts.amazonaws.com) mounted at /var/run/secrets/captchakeys/aws, its path in
  CAPTCHAKEY_AWS_TOKEN_FILE; no Vault token volume, mount, address or token path;
- the operator's aws.endpointUrl reaches the agent as CAPTCHAKEY_AWS_ENDPOINT_URL;
- a Vault binding's pod gets no AWS token (it is injected only when a binding uses AWS);
- the patched pod is a valid Pod for Kubernetes 1.37.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate

from agent.contract.pod import AGENT_CONTAINER, ANNOTATION_BINDING, INJECT_LABEL
from agent.operator.admission import parse_pod
from agent.operator.config import InjectionConfig
from agent.operator.injection import plan_injection

CONFIG = InjectionConfig(image="registry.example/captcha-key-agent:9.9.9")
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "solver-0",
        "namespace": "solver-dev",
        "labels": {INJECT_LABEL: "true"},
        "annotations": {ANNOTATION_BINDING: "captcha-dev"},
    },
    "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
}


def aws_binding(**aws: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "captcha-dev", "namespace": "solver-dev"},
        "spec": {
            "environment": "dev",
            "source": "aws",
            "aws": {
                "secretId": "captchaai/dev",
                "region": "eu-west-1",
                "roleArn": "arn:aws:iam::123456789012:role/captchakey-dev",
                **aws,
            },
        },
    }


def injected(binding: dict[str, Any], endpoint: str | None = None) -> dict[str, Any]:
    request = parse_pod(POD, CONFIG)
    assert request is not None
    plan = plan_injection(
        request, binding, CONFIG, vault_addr="https://vault:8200", aws_endpoint_url=endpoint
    )
    assert plan is not None
    pod = copy.deepcopy(POD)
    pod["spec"].update(plan)
    return pod


def agent_of(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["initContainers"] if c["name"] == AGENT_CONTAINER)


def tokens(pod: dict[str, Any]) -> dict[str, str]:
    """Projected-volume name -> the audience of its token (the API server's when unset)."""
    found = {}
    for volume in pod["spec"]["volumes"]:
        for source in (volume.get("projected") or {}).get("sources", []):
            if "serviceAccountToken" in source:
                found[volume["name"]] = source["serviceAccountToken"].get("audience", "api")
    return found


def test_aws_binding_gets_an_sts_token_and_no_vault_token() -> None:
    pod = injected(aws_binding())
    assert tokens(pod) == {"captchaai-aws-token": "sts.amazonaws.com", "captchaai-kube-api": "api"}
    agent = agent_of(pod)
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["CAPTCHAKEY_AWS_TOKEN_FILE"] == "/var/run/secrets/captchakeys/aws/token"
    assert "CAPTCHAKEY_TOKEN_FILE" not in env
    assert "VAULT_ADDR" not in env
    assert "CAPTCHAKEY_AWS_ENDPOINT_URL" not in env
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts["captchaai-aws-token"] == "/var/run/secrets/captchakeys/aws"
    assert "captchaai-vault-token" not in mounts
    kubernetes_validate.validate(pod, "1.37", strict=True)


def test_binding_audience_and_operator_endpoint_reach_the_agent() -> None:
    pod = injected(aws_binding(audience="sts.custom"), endpoint="https://vpce.example")
    assert tokens(pod)["captchaai-aws-token"] == "sts.custom"
    env = {e["name"]: e.get("value") for e in agent_of(pod)["env"]}
    assert env["CAPTCHAKEY_AWS_ENDPOINT_URL"] == "https://vpce.example"


def test_vault_binding_gets_no_aws_token() -> None:
    binding = {
        "metadata": {"name": "captcha-dev"},
        "spec": {"environment": "dev", "vault": {"auth": {"role": "w"}}},
    }
    pod = injected(binding, endpoint="https://vpce.example")
    assert "captchaai-aws-token" not in tokens(pod)
    env = {e["name"] for e in agent_of(pod)["env"]}
    assert "CAPTCHAKEY_AWS_TOKEN_FILE" not in env
    assert "CAPTCHAKEY_AWS_ENDPOINT_URL" not in env
