"""AWS Secrets Manager as a key source, against a real moto server over HTTP.

Covers (boto3 unmodified, only ``endpoint_url`` points at loopback):
- the pod's identity: the projected token exchanged with STS AssumeRoleWithWebIdentity,
  once per credential lifetime (many reads, one exchange; again only near expiry);
- a JSON field and a plain-string secret; staging labels (AWSCURRENT after a
  put-secret-value, AWSPREVIOUS, AWSPENDING) and a pinned version id;
- metadata from DescribeSecret: which id each label is on, never the value;
- actionable errors: missing secret, missing field, a field asked of a plain string,
  a pinned id that does not exist, an unreachable endpoint; none carries the key;
- AccessDeniedException from real IAM evaluation (moto with policies enforced): the
  operator's metadata-only policy may DescribeSecret but not GetSecretValue, and the
  message names the secret and the action.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.aws import (
    AwsAccessDeniedError,
    AwsError,
    AwsLoginError,
    AwsSecretNotFoundError,
    AwsSecretRef,
    AwsUnavailableError,
    AwsVersionUnavailableError,
    WebIdentity,
)
from agent.aws.secrets import SecretsManagerSource
from agent.vault import FieldMissingError
from tests.aws.conftest import OPERATOR_ACTIONS
from tests.rig.helpers import free_port
from tests.rig.moto import REGION, MotoServer

KEY_1 = "0123456789abcdef0123456789abcdef"
KEY_2 = "fedcba9876543210fedcba9876543210"


def source(
    moto: MotoServer, identity: WebIdentity | None, **kwargs: object
) -> SecretsManagerSource:
    return SecretsManagerSource(REGION, identity, endpoint_url=moto.url, **kwargs)  # type: ignore[arg-type]


def test_reads_a_json_field_with_the_pods_identity(
    moto: MotoServer, web_identity: WebIdentity
) -> None:
    name, _, version = moto.create_secret(json.dumps({"api_key": KEY_1, "other": "x"}))
    reader = source(moto, web_identity)
    key = reader.read_key(AwsSecretRef(name, REGION, field="api_key"))
    assert (key.value, key.version) == (KEY_1, version)
    assert KEY_1 not in repr(key)
    for _ in range(5):
        reader.read_key(AwsSecretRef(name, REGION, field="api_key"))
        reader.metadata(AwsSecretRef(name, REGION, field="api_key"))
    assert reader.logins == 1, "credentials must be reused, not re-obtained per read"


def test_credentials_are_renewed_only_when_they_near_expiry(
    moto: MotoServer, web_identity: WebIdentity
) -> None:
    name, _, _ = moto.create_secret(KEY_1)
    now = [0.0]
    reader = source(moto, web_identity, clock=lambda: now[0])
    ref = AwsSecretRef(name, REGION)
    import time

    now[0] = time.time()
    reader.read_key(ref)
    now[0] += 600  # ten minutes later: still valid (moto issues one-hour credentials).
    reader.read_key(ref)
    assert reader.logins == 1
    now[0] += 3600  # past their expiry: the token is exchanged again, read afresh.
    web_identity.token_file.write_text(web_identity.token_file.read_text() + "x")
    reader.read_key(ref)
    assert reader.logins == 2


def test_plain_string_secret_and_a_field_asked_of_it(
    moto: MotoServer, web_identity: WebIdentity
) -> None:
    name, _, _ = moto.create_secret(f"  {KEY_1}\n")
    reader = source(moto, web_identity)
    assert reader.read_key(AwsSecretRef(name, REGION)).value == KEY_1
    with pytest.raises(AwsError, match="plain string") as caught:
        reader.read_key(AwsSecretRef(name, REGION, field="api_key"))
    assert KEY_1 not in str(caught.value)


def test_missing_field_names_the_fields_present_but_no_value(
    moto: MotoServer, web_identity: WebIdentity
) -> None:
    name, _, _ = moto.create_secret(json.dumps({"key": KEY_1}))
    with pytest.raises(FieldMissingError, match="'key'") as caught:
        source(moto, web_identity).read_key(AwsSecretRef(name, REGION, field="api_key"))
    assert KEY_1 not in str(caught.value)


def test_labels_follow_a_rotation_and_metadata_never_reads_the_value(
    moto: MotoServer, web_identity: WebIdentity
) -> None:
    name, _, first = moto.create_secret(KEY_1)
    reader = source(moto, web_identity)
    ref = AwsSecretRef(name, REGION)
    assert reader.metadata(ref).current_version == first
    second = moto.put_value(name, KEY_2)
    meta = reader.metadata(ref)
    assert meta.current_version == second
    assert meta.stages[first] == ("AWSPREVIOUS",)
    assert meta.live_versions == {first, second}
    assert reader.read_key(ref).value == KEY_2
    previous = reader.read_key(AwsSecretRef(name, REGION, stage="AWSPREVIOUS"))
    assert (previous.value, previous.version) == (KEY_1, first)
    pinned = reader.read_key(AwsSecretRef(name, REGION, version=first))
    assert (pinned.value, pinned.version) == (KEY_1, first)


def test_a_pending_label_is_followed_before_it_is_promoted(
    moto: MotoServer, web_identity: WebIdentity
) -> None:
    name, _, first = moto.create_secret(KEY_1)
    pending = moto.put_value(name, KEY_2, stages=["AWSPENDING"])
    reader = source(moto, web_identity)
    canary = AwsSecretRef(name, REGION, stage="AWSPENDING")
    assert reader.metadata(canary).current_version == pending
    assert reader.read_key(canary).value == KEY_2
    assert reader.metadata(AwsSecretRef(name, REGION)).current_version == first


def test_missing_secret_and_missing_version_say_what_to_fix(
    moto: MotoServer, web_identity: WebIdentity
) -> None:
    reader = source(moto, web_identity)
    with pytest.raises(AwsSecretNotFoundError, match=r"captchaai/nope.*eu-west-1"):
        reader.read_key(AwsSecretRef("captchaai/nope", REGION))
    name, _, _ = moto.create_secret(KEY_1)
    missing = "a" * 8 + "-" + "b" * 4 + "-" + "c" * 4 + "-" + "d" * 4 + "-" + "e" * 12
    with pytest.raises(AwsVersionUnavailableError, match=missing):
        reader.read_key(AwsSecretRef(name, REGION, version=missing))
    with pytest.raises(AwsVersionUnavailableError, match="AWSPENDING"):
        reader.metadata(AwsSecretRef(name, REGION, stage="AWSPENDING"))


def test_unreadable_token_is_a_login_error_naming_the_file(
    moto: MotoServer, web_identity: WebIdentity, tmp_path: Path
) -> None:
    name, _, _ = moto.create_secret(KEY_1)
    identity = WebIdentity(web_identity.role_arn, token_file=tmp_path / "absent")
    with pytest.raises(AwsLoginError, match="absent"):
        source(moto, identity).read_key(AwsSecretRef(name, REGION))


def test_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    reader = SecretsManagerSource(
        REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=1, max_attempts=1
    )
    with pytest.raises(AwsUnavailableError, match="retrying with exponential backoff"):
        reader.metadata(AwsSecretRef("captchaai/dev", REGION))


def test_access_denied_names_the_secret_and_the_action(
    moto_iam: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _, _ = moto_iam.create_secret(KEY_1)
    # moto evaluates actions, not resource ARNs: the docs' policies name the secret's ARN.
    operator = moto_iam.create_user(
        f"operator-{name[-10:]}", [{"Action": OPERATOR_ACTIONS, "Resource": "*"}]
    )
    # The operator's identity comes from the SDK's default chain, as with IRSA env vars.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", operator["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", operator["aws_secret_access_key"])
    reader = source(moto_iam, None)
    ref = AwsSecretRef(name, REGION)
    assert reader.metadata(ref).current_version  # DescribeSecret is allowed...
    with pytest.raises(AwsAccessDeniedError) as caught:  # ...the value is not.
        reader.read_key(ref)
    message = str(caught.value)
    assert "AccessDeniedException" in message
    assert f'"{name}"' in message
    assert "secretsmanager:GetSecretValue" in message
    assert KEY_1 not in message
    assert caught.value.reason == "AwsForbidden"


def test_every_aws_error_reason_is_a_status_reason() -> None:
    """Each reason an AWS failure reports is a word of the /status lastError contract."""
    from agent.aws import errors
    from agent.contract import agentstatus

    classes = [getattr(errors, name) for name in errors.__all__]
    reasons = {cls.reason for cls in classes} | {agentstatus.AWS_THROTTLED}
    assert reasons <= agentstatus.REASONS
    throttled = AwsUnavailableError(
        "Secrets Manager", REGION, "ThrottlingException", throttled=True
    )
    assert throttled.reason == agentstatus.AWS_THROTTLED
