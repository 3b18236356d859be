"""Fixtures for the AWS tests: real moto servers on loopback (see tests/rig/moto.py).

- ``moto``: one permissive server for the session (STS web identity, Secrets Manager).
- ``moto_iam``: one server that evaluates IAM policies, for real AccessDeniedExceptions.
- ``web_identity``: a role the pod may assume and a projected-token file for it.

The Vault-user checks use the rig's ``workload`` (``tests/rig/fixtures.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.aws import WebIdentity
from tests.rig.moto import ACCOUNT, MotoServer

# What an agent needs on a secret, exactly: the policy docs/aws.md gives.
AGENT_ACTIONS = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
OPERATOR_ACTIONS = ["secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds"]
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.example"},
            "Action": "sts:AssumeRoleWithWebIdentity",
        }
    ],
}
# A projected token as the kubelet writes it (moto does not verify its signature).
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsic3RzLmFtYXpvbmF3cy5jb20iXX0.c2lnbmF0dXJl"


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_iam() -> Iterator[MotoServer]:
    server = MotoServer(enforce_iam=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def web_identity(moto: MotoServer, tmp_path: Path) -> WebIdentity:
    role = moto.create_role([{"Action": AGENT_ACTIONS, "Resource": "*"}], TRUST)
    token_file = tmp_path / "aws-token"
    token_file.write_text(TOKEN)
    return WebIdentity(role_arn=role, token_file=token_file, session_name="captchakey-test")
