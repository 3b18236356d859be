"""docs/aws.md's IAM policies, applied literally to a moto server that evaluates IAM.

Covers: the JSON blocks of the page parse; the agent's policy lets its identity call
GetSecretValue and DescribeSecret; the operator's policy lets it DescribeSecret and is
refused GetSecretValue (AccessDeniedException naming the secret and the action). moto
evaluates actions but not resource ARNs, so each policy's Resource is widened to "*"
here: what is proven is the set of actions, not the ARN patterns.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.aws import AwsAccessDeniedError, AwsSecretRef
from agent.aws.secrets import SecretsManagerSource
from tests.rig.moto import REGION, MotoServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "aws.md"
KEY = "0123456789abcdef0123456789abcdef"


def policies() -> dict[str, dict[str, Any]]:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]
    by_sid = {}
    for block in blocks:
        for statement in block["Statement"]:
            by_sid[statement.get("Sid", statement["Action"])] = block
    return {
        "agent": by_sid["ReadThisEnvironmentsKey"],
        "operator": by_sid["VersionsOnlyNeverValues"],
    }


def identity_with(moto: MotoServer, policy: dict[str, Any]) -> dict[str, str]:
    statements = [
        {k: v for k, v in s.items() if k not in ("Effect", "Sid")} | {"Resource": "*"}
        for s in policy["Statement"]
    ]
    return moto.create_user(f"doc-{uuid.uuid4().hex[:10]}", statements)


def reader(monkeypatch: pytest.MonkeyPatch, moto: MotoServer, keys: dict[str, str]) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    return SecretsManagerSource(REGION, endpoint_url=moto.url)


def test_the_trust_policy_allows_only_web_identity_with_aud_and_sub() -> None:
    text = DOC.read_text()
    trust = next(
        json.loads(b)
        for b in re.findall(r"```json\n(.*?)```", text, re.S)
        if "sts:AssumeRoleWithWebIdentity" in b
    )
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    conditions = statement["Condition"]["StringEquals"]
    assert sorted(k.rsplit(":", 1)[1] for k in conditions) == ["aud", "sub"]


def test_agent_policy_reads_the_key(moto_iam: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    name, _, version = moto_iam.create_secret(KEY)
    source = reader(monkeypatch, moto_iam, identity_with(moto_iam, policies()["agent"]))
    assert source.metadata(AwsSecretRef(name, REGION)).current_version == version
    assert source.read_key(AwsSecretRef(name, REGION)).value == KEY


def test_operator_policy_reads_versions_but_never_values(
    moto_iam: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _, version = moto_iam.create_secret(KEY)
    source = reader(monkeypatch, moto_iam, identity_with(moto_iam, policies()["operator"]))
    assert source.metadata(AwsSecretRef(name, REGION)).current_version == version
    with pytest.raises(AwsAccessDeniedError, match="secretsmanager:GetSecretValue"):
        source.read_key(AwsSecretRef(name, REGION))
