"""AWS IAM auth to Vault (``--auth-method aws``): the signed sts:GetCallerIdentity login.

Covers:
- the login fields carry a SigV4-signed GetCallerIdentity for the regional STS endpoint,
  with ``X-Vault-AWS-IAM-Server-ID`` among the signed headers; replayed to STS as
  Vault replays it, moto with signature checking (IAM enforced) verifies the signature
  and names the worker's ARN; signed with a wrong secret, the same request is refused
  (so the check is real);
- with an ``sts_endpoint`` override, the request is signed for that host;
- a real OpenBao verifies the login through its ``aws`` auth method configured with
  moto as ``sts_endpoint`` / ``iam_endpoint``; OpenBao 2.x ships without that plugin,
  so the test skips with that reason when the server refuses to enable it;
- a 403 on the key's path names the Vault role whose policies lack the grant;
- the CLI refuses ``--auth-method aws`` without ``--role`` with a usage message.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac.exceptions
import pytest
import requests
from botocore.credentials import Credentials
from click.testing import CliRunner

from agent.aws.vaultauth import SERVER_ID_HEADER, AwsIamAuth, signed_login_request
from agent.cli import main
from agent.vault import SecretRef, VaultClient
from tests.rig.moto import ACCOUNT, REGION, MotoServer
from tests.rig.openbao import OpenBaoServer


def replay(moto: MotoServer, fields: dict[str, str]) -> requests.Response:
    """Send the signed request to STS exactly as Vault does: same method, headers, body."""
    headers = {
        k: v[0] for k, v in json.loads(base64.b64decode(fields["iam_request_headers"])).items()
    }
    body = base64.b64decode(fields["iam_request_body"])
    return requests.post(f"{moto.url}/", data=body, headers=headers, timeout=10)


@pytest.fixture
def worker(moto_iam: MotoServer) -> Credentials:
    user = f"worker-{uuid.uuid4().hex[:10]}"
    keys = moto_iam.create_user(user, [{"Action": "sts:GetCallerIdentity", "Resource": "*"}])
    worker = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    worker.user = user  # type: ignore[attr-defined]
    return worker


def test_signed_login_request_is_verified_by_sts(moto_iam: MotoServer, worker: Credentials) -> None:
    fields = signed_login_request(worker, REGION, header_value="vault.example", endpoint=None)
    assert (
        base64.b64decode(fields["iam_request_url"])
        == f"https://sts.{REGION}.amazonaws.com/".encode()
    )
    headers = json.loads(base64.b64decode(fields["iam_request_headers"]))
    assert headers[SERVER_ID_HEADER] == ["vault.example"]
    signed = headers["Authorization"][0].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert SERVER_ID_HEADER.lower() in signed
    answer = replay(moto_iam, fields)
    assert answer.status_code == 200, answer.text
    arn = re.search(r"<Arn>([^<]+)</Arn>", answer.text)
    assert arn is not None
    assert arn.group(1) == f"arn:aws:iam::{ACCOUNT}:user/{worker.user}"  # type: ignore[attr-defined]


def test_a_wrong_signature_is_refused_so_the_check_is_real(
    moto_iam: MotoServer, worker: Credentials
) -> None:
    forged = Credentials(worker.access_key, "not-the-secret")
    answer = replay(
        moto_iam, signed_login_request(forged, REGION, header_value=None, endpoint=None)
    )
    assert answer.status_code == 403
    assert "SignatureDoesNotMatch" in answer.text


def test_sts_endpoint_override_is_what_gets_signed(worker: Credentials) -> None:
    fields = signed_login_request(
        worker, REGION, header_value=None, endpoint="https://sts.vpce.example/"
    )
    headers = json.loads(base64.b64decode(fields["iam_request_headers"]))
    assert headers["Host"] == ["sts.vpce.example"]
    assert (
        base64.b64decode(fields["iam_request_body"])
        == b"Action=GetCallerIdentity&Version=2011-06-15"
    )


@pytest.fixture
def openbao_aws(openbao: OpenBaoServer, moto: MotoServer) -> Iterator[str]:
    """OpenBao's aws auth method, calling moto for STS and IAM; its mount path."""
    mount = f"aws-{moto.port}"
    client = openbao.client()
    try:
        client.sys.enable_auth_method("aws", path=mount)
    except hvac.exceptions.VaultError as exc:
        if "plugin not found" in str(exc):
            pytest.skip(
                "this OpenBao has no aws auth method (OpenBao 2.x removed it from its builtin "
                "plugins): the Vault side of the IAM login is not verifiable here"
            )
        raise
    vault_identity = moto.create_user(f"vault-{mount}", [{"Action": "iam:*", "Resource": "*"}])
    client.write(
        f"auth/{mount}/config/client",
        access_key=vault_identity["aws_access_key_id"],
        secret_key=vault_identity["aws_secret_access_key"],
        sts_endpoint=moto.url,
        iam_endpoint=moto.url,
        sts_region=REGION,
        iam_server_id_header_value="vault.example",
    )
    yield mount
    client.sys.disable_auth_method(mount)


def test_real_openbao_verifies_the_iam_login(
    openbao: OpenBaoServer, moto: MotoServer, openbao_aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = moto.create_user(
        f"ec2-{openbao_aws}", [{"Action": "sts:GetCallerIdentity", "Resource": "*"}]
    )
    policy = 'path "secret/data/captchaai/aws-iam" { capabilities = ["read"] }'
    openbao.client().sys.create_or_update_policy("aws-iam-worker", policy)
    openbao.client().write(
        f"auth/{openbao_aws}/role/worker",
        auth_type="iam",
        bound_iam_principal_arn=f"arn:aws:iam::{ACCOUNT}:user/ec2-{openbao_aws}",
        token_policies="aws-iam-worker",
    )
    version = openbao.put_key("captchaai/aws-iam", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    auth = AwsIamAuth(role="worker", mount=openbao_aws, region=REGION, header_value="vault.example")
    client = VaultClient(openbao.addr, auth)
    assert client.read_key(SecretRef("captchaai/aws-iam")).version == version
    assert client.logins == 1


def test_a_refusal_names_the_role_that_lacks_the_grant() -> None:
    auth = AwsIamAuth(role="captcha-worker", mount="aws-prod")
    holder = auth.policy_holder({})
    assert (
        holder
        == "the Vault role 'captcha-worker' (auth/aws-prod/role/captcha-worker, token_policies)"
    )


def test_cli_needs_a_role_for_aws_auth(tmp_path: Path) -> None:
    args = ["agent", "--auth-method", "aws", "--path", "captchaai/dev", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--once", "--health-addr", ""])
    assert result.exit_code == 2
    assert "--auth-method aws needs --role" in result.output
