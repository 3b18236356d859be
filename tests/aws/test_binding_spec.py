"""An AWS CaptchaKeyBinding: parsed and checked by the same rules as a Vault one.

Covers:
- ``spec.source: aws`` with ``spec.aws`` parses into an AwsSecretRef (``{environment}``
  resolved in the secret id; defaults: AWSCURRENT, the sts.amazonaws.com audience,
  a plain-string secret when no field is named) and the role to assume;
- refused with a message naming the field: both backends named, neither named,
  ``source: aws`` without ``spec.aws``, ``spec.aws`` without ``source: aws``, a bad
  region, role ARN or secret id, versionStage together with versionId;
- the operator's policy: AWS bindings are refused unless the operator serves the
  account (an empty allow-list refuses all), and secrets outside
  ``<prefix>/<environment>`` are refused, by name and by ARN, and so is a token
  audience outside the operator's ``aws.audiences``.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.aws import AwsSecretRef
from agent.binding.model import BindingSpec, InvalidBindingError
from agent.operator.config import AwsConfig, OperatorConfig
from agent.operator.validation import validate_binding

ROLE = "arn:aws:iam::123456789012:role/captchakey-dev"
CONFIG = OperatorConfig(environments=("dev", "prod"), aws=AwsConfig(accounts=("123456789012",)))


def body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "captcha-dev", "namespace": "solver-dev"},
        "spec": {"environment": "dev", **spec},
    }


def aws(**fields: Any) -> dict[str, Any]:
    return {
        "source": "aws",
        "aws": {
            "secretId": "captchaai/{environment}",
            "region": "eu-west-1",
            "roleArn": ROLE,
            **fields,
        },
    }


def refused(binding: dict[str, Any], config: OperatorConfig = CONFIG) -> str:
    with pytest.raises(InvalidBindingError) as caught:
        validate_binding(binding, config)
    return str(caught.value)


def test_an_aws_binding_parses_with_defaults() -> None:
    spec = BindingSpec.from_body(body(**aws()))
    assert spec.source == "aws"
    assert spec.vault is None
    assert spec.ref == AwsSecretRef("captchaai/dev", "eu-west-1", None, "AWSCURRENT", None)
    assert spec.aws is not None
    assert (spec.aws.role_arn, spec.aws.audience) == (ROLE, "sts.amazonaws.com")
    assert validate_binding(body(**aws()), CONFIG) == spec


def test_field_stage_pin_and_audience_are_read() -> None:
    spec = BindingSpec.from_body(
        body(**aws(field="api_key", versionStage="AWSPENDING", audience="sts.example"))
    )
    assert spec.ref == AwsSecretRef("captchaai/dev", "eu-west-1", "api_key", "AWSPENDING", None)
    assert spec.aws is not None
    assert spec.aws.audience == "sts.example"
    pinned = BindingSpec.from_body(body(**aws(versionId="a1b2c3d4-1111-2222-3333-444455556666")))
    assert pinned.ref.version == "a1b2c3d4-1111-2222-3333-444455556666"


def test_a_vault_binding_is_unchanged() -> None:
    spec = BindingSpec.from_body(body(vault={"auth": {"role": "worker"}}))
    assert spec.source == "vault"
    assert spec.aws is None
    assert spec.vault is not None
    assert spec.vault.role == "worker"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({**aws(), "vault": {"auth": {"role": "w"}}}, "names both key sources"),
        ({}, "name a key source"),
        ({"source": "aws"}, "needs spec.aws, which is missing"),
        ({"aws": aws()["aws"]}, "set spec.source: aws"),
        ({"source": "gcp"}, "spec.source 'gcp' is not one of vault, aws"),
        (aws(region="Europe"), "spec.aws.region: 'Europe' is not allowed: an AWS region"),
        (aws(roleArn="arn:aws:iam::123:user/x"), "spec.aws.roleArn"),
        (aws(secretId="captchaai/dev with spaces"), "spec.aws.secretId"),
        (aws(secretId=""), "spec.aws.secretId: '' is not allowed: a secret name"),
        (
            aws(versionStage="AWSPREVIOUS", versionId="a" * 32),
            "versionStage and versionId are both set: use one",
        ),
        (aws(versionId="short"), "spec.aws.versionId"),
        (aws(field=""), "spec.aws.field: '' is not allowed: a string; 1-256 characters"),
    ],
)
def test_refused_with_the_field_named(spec: dict[str, Any], expected: str) -> None:
    assert expected in refused(body(**spec))


def test_the_operator_serves_no_aws_account_by_default() -> None:
    assert "serves no AWS account" in refused(body(**aws()), OperatorConfig())


def test_role_and_secret_must_be_in_an_allowed_account() -> None:
    other = "arn:aws:iam::999999999999:role/x"
    assert "account 999999999999" in refused(body(**aws(roleArn=other)))
    arn = "arn:aws:secretsmanager:eu-west-1:999999999999:secret:captchaai/dev-AbCdEf"
    assert "account 999999999999" in refused(body(**aws(secretId=arn)))


def test_token_audience_must_be_allowed() -> None:
    assert "spec.aws.audience 'sts.elsewhere.example' is not an allowed" in refused(
        body(**aws(audience="sts.elsewhere.example"))
    )
    custom = OperatorConfig(
        environments=("dev",), aws=AwsConfig(accounts=("123456789012",), audiences=("sts.x",))
    )
    assert validate_binding(body(**aws(audience="sts.x")), custom).aws is not None


def test_secret_must_be_under_the_environments_prefix() -> None:
    assert "outside 'captchaai/dev'" in refused(body(**aws(secretId="captchaai/prod")))
    assert "outside" in refused(body(**aws(secretId="captchaai/dev-other")))
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:captchaai/prod-AbCdEf"
    assert "outside" in refused(body(**aws(secretId=arn)))
    ok = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:captchaai/dev/solver-AbCdEf"
    assert validate_binding(body(**aws(secretId=ok)), CONFIG).ref.version is None
