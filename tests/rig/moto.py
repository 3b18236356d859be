"""A real AWS API server on loopback for the AWS tests: moto's server mode, in its own process.

No AWS endpoint is reachable from these machines. ``moto_server`` serves Secrets
Manager, STS and IAM over real HTTP with AWS's wire protocols, so the product's
boto3 code runs unmodified against it; the tests only point ``endpoint_url`` at it.

Two flavours, because moto cannot do both at once:

- permissive (the default): IAM policies are not evaluated, but STS
  ``AssumeRoleWithWebIdentity`` works unsigned, as it does on AWS: the IRSA path.
- ``enforce_iam=True``: every request must be signed by a known IAM identity and its
  action is checked against its policies (moto evaluates actions, not resource ARNs;
  it answers a denial as HTTP 403 with an XML body), so ``AccessDeniedException``
  is AWS's real answer to a real policy. moto then refuses unsigned calls, so the
  web-identity exchange cannot be tested on this flavour.

What moto does not model (and so what these tests do not prove): the web identity
token's signature, audience and ``sub`` are not verified against an OIDC provider;
``ListSecretVersionIds``' ``CreatedDate`` is the time of the call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import requests

from tests.rig.helpers import free_port, stop_process

__all__ = ["ACCOUNT", "REGION", "MotoServer"]

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account.


class MotoServer:
    """``python -m moto.server`` on a free loopback port, with an admin identity for setup."""

    def __init__(self, *, enforce_iam: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.enforce_iam = enforce_iam
        self._workdir = Path(tempfile.mkdtemp(prefix="moto-"))
        self._process: subprocess.Popen[bytes] | None = None
        self.admin: dict[str, str] = {"aws_access_key_id": "setup", "aws_secret_access_key": "x"}

    def start(self, timeout: float = 20.0) -> None:
        with (self._workdir / "server.log").open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HOME": str(self._workdir)},
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                requests.get(f"{self.url}/moto-api/data.json", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {self.log_text()}") from None
                time.sleep(0.05)
        if self.enforce_iam:
            self.admin = self.create_user("admin", [{"Action": "*", "Resource": "*"}])
            requests.post(f"{self.url}/moto-api/reset-auth", data="0", timeout=5).raise_for_status()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return (self._workdir / "server.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, service: str, **credentials: str) -> Any:
        """A boto3 client for ``service`` on this server (the admin identity by default)."""
        return boto3.session.Session().client(
            service, endpoint_url=self.url, region_name=REGION, **(credentials or self.admin)
        )

    def create_user(self, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
        """An IAM user with an inline policy; return its access key as client credentials."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=_policy(statements))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }

    def create_role(self, statements: list[dict[str, Any]], trust: dict[str, Any]) -> str:
        """A role with a trust policy and an inline policy; return its ARN."""
        iam = self.client("iam")
        name = f"role-{uuid.uuid4().hex[:10]}"
        arn = str(
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
                "Arn"
            ]
        )
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=_policy(statements))
        return arn

    def create_secret(self, value: str, *, name: str | None = None) -> tuple[str, str, str]:
        """A new secret holding ``value``: (name, ARN, version id)."""
        name = name or f"captchaai/test-{uuid.uuid4().hex[:10]}"
        created = self.client("secretsmanager").create_secret(Name=name, SecretString=value)
        return name, str(created["ARN"]), str(created["VersionId"])

    def put_value(self, secret_id: str, value: str, *, stages: list[str] | None = None) -> str:
        """``aws secretsmanager put-secret-value``; return the new version id."""
        extra: dict[str, Any] = {"VersionStages": stages} if stages else {}
        response = self.client("secretsmanager").put_secret_value(
            SecretId=secret_id, SecretString=value, **extra
        )
        return str(response["VersionId"])


def _policy(statements: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}
    )
