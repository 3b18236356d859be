"""Vault's ``aws`` auth method, IAM flow: log in as the machine's AWS identity (EC2, Lambda).

The guide's table: "AWS IAM | EC2/Lambda workers | Instance role". The worker signs an
``sts:GetCallerIdentity`` request with its own AWS credentials (the instance role,
a Lambda's execution role: whatever the SDK's default chain finds) and hands the
*signed request* to Vault, which forwards it to STS. STS answers with the caller's
ARN, Vault matches it against the role's ``bound_iam_principal_arn``, and no secret
ever leaves the machine: the credentials only sign.

``header_value`` goes into the signed ``X-Vault-AWS-IAM-Server-ID`` header, which
Vault's ``iam_server_id_header_value`` then requires: a signed request meant for this
Vault cannot be replayed against another one. The request is signed for the regional
STS endpoint (``https://sts.<region>.amazonaws.com/``), which Vault's ``sts_region``
must name; ``sts_endpoint`` overrides it (a VPC endpoint). Credentials are read at
every login, so rotated instance-role credentials are always the current ones.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.awsrequest
import hvac

from agent.vault.errors import AuthenticationError

__all__ = ["AwsIamAuth", "signed_login_request"]

_BODY = "Action=GetCallerIdentity&Version=2011-06-15"

# As in agent.aws.secrets: the SDK's DEBUG records (request and response dumps) never pass.
for _sdk_logger in ("botocore", "boto3"):
    logging.getLogger(_sdk_logger).setLevel(logging.WARNING)
SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"


@dataclass(frozen=True)
class AwsIamAuth:
    """Vault's ``aws`` method (IAM), with the SDK's default AWS credentials."""

    role: str
    mount: str = "aws"
    region: str = "us-east-1"
    header_value: str | None = None
    sts_endpoint: str | None = None
    renewable_by_login = True

    def describe(self) -> str:
        return f"aws iam login as role {self.role!r} at auth/{self.mount}"

    def policy_holder(self, token_meta: Mapping[str, Any]) -> str:
        return f"the Vault role {self.role!r} (auth/{self.mount}/role/{self.role}, token_policies)"

    def login(self, client: hvac.Client) -> Mapping[str, Any]:
        credentials = boto3.session.Session().get_credentials()
        if credentials is None:
            raise AuthenticationError(
                "aws auth needs AWS credentials and found none: on EC2 attach an instance "
                "role, on Lambda the execution role is used; elsewhere set AWS_* variables "
                "or a profile"
            )
        params = signed_login_request(
            credentials.get_frozen_credentials(),
            self.region,
            header_value=self.header_value,
            endpoint=self.sts_endpoint,
        )
        response = client.adapter.login(
            f"/v1/auth/{self.mount}/login", use_token=True, json={**params, "role": self.role}
        )
        auth: Mapping[str, Any] = response["auth"]
        return auth


def signed_login_request(
    credentials: Any, region: str, *, header_value: str | None, endpoint: str | None
) -> dict[str, str]:
    """The ``iam_*`` login fields: a SigV4-signed GetCallerIdentity, base64-encoded."""
    url = endpoint or f"https://sts.{region}.amazonaws.com/"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Host": urlsplit(url).netloc,
    }
    if header_value:
        headers[SERVER_ID_HEADER] = header_value
    request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=_BODY, headers=headers)
    botocore.auth.SigV4Auth(credentials, "sts", region).add_auth(request)
    signed = {name: [value] for name, value in request.headers.items()}
    return {
        "iam_http_request_method": "POST",
        "iam_request_url": _b64(url),
        "iam_request_body": _b64(_BODY),
        "iam_request_headers": _b64(json.dumps(signed)),
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
