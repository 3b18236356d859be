"""The Vault path's guarantees, held by the AWS source too (real moto, real botocore).

Covers:
- the refresher writes the key with its version id, reads the value only when
  DescribeSecret shows another id on the label, and rewrites after put-secret-value;
- throttling: AWS's ThrottlingException (over real HTTP, from a proxy in front of moto)
  is retried by botocore with backoff, then surfaces as AwsThrottled; the agent backs
  off with jitter, the last good key stays in place, and it recovers when AWS does;
- an outage (moto stopped) keeps the last good key and reports AwsUnreachable;
- the key is in no log line, no /status field, no error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from agent import keyfile
from agent.aws import AwsSecretRef, AwsUnavailableError, WebIdentity
from agent.aws.errors import AwsNoCredentialsError
from agent.aws.secrets import SecretsManagerSource
from agent.keyrules import KeyRejectedError, KeyRules
from agent.runtime.backoff import Backoff
from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
from tests.aws.conftest import AGENT_ACTIONS, TRUST
from tests.aws.throttle import ThrottlingProxy
from tests.rig.moto import REGION, MotoServer
from tests.rig.scenario import eventually

KEY_1 = "0123456789abcdef0123456789abcdef"
KEY_2 = "fedcba9876543210fedcba9876543210"


def held(out: Path) -> str | int | None:
    meta = keyfile.read_metadata(out / "api_key")
    return meta.version if meta else None


async def test_refresher_follows_put_secret_value(
    moto: MotoServer, web_identity: WebIdentity, tmp_path: Path
) -> None:
    name, _, first = moto.create_secret(json.dumps({"api_key": KEY_1}))
    client = SecretsManagerSource(REGION, web_identity, endpoint_url=moto.url)
    refresher = KeyRefresher(
        client, AwsSecretRef(name, REGION, field="api_key"), KeyTarget(tmp_path)
    )
    assert await refresher.refresh()
    assert held(tmp_path) == first
    meta = keyfile.read_metadata(tmp_path / "api_key")
    assert meta is not None
    assert meta.source == f"aws-secretsmanager:{REGION}:{name}#api_key"
    assert not await refresher.refresh(), "same id on AWSCURRENT: the value is not read again"
    second = moto.put_value(name, json.dumps({"api_key": KEY_2}))
    assert await refresher.refresh()
    assert (tmp_path / "api_key").read_text() == KEY_2
    assert held(tmp_path) == second
    # A new refresher (a restarted container) trusts what the volume holds.
    again = KeyRefresher(client, AwsSecretRef(name, REGION, field="api_key"), KeyTarget(tmp_path))
    assert again.held_version == second
    assert not await again.refresh()


async def test_throttling_backs_off_keeps_the_key_and_recovers(
    moto: MotoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    role = moto.create_role([{"Action": AGENT_ACTIONS, "Resource": "*"}], TRUST)
    (tmp_path / "token").write_text("eyJ.token.sig")
    name, _, first = moto.create_secret(KEY_1)
    out = tmp_path / "keys"
    out.mkdir()
    with ThrottlingProxy(moto.url) as proxy:
        identity = WebIdentity(role, token_file=tmp_path / "token")
        client = SecretsManagerSource(REGION, identity, endpoint_url=proxy.url, max_attempts=3)
        agent = KeyAgent(
            KeyRefresher(client, AwsSecretRef(name, REGION), KeyTarget(out)),
            refresh_interval=0.05,
            backoff=Backoff(base=0.05, cap=0.2),
        )
        caplog.set_level(logging.INFO)
        task = asyncio.create_task(agent.run())
        try:
            await eventually(lambda: held(out) == first, 60)
            second = moto.put_value(name, KEY_2)
            proxy.throttling = True
            await eventually(lambda: agent.consecutive_failures >= 2, 60)
            assert agent.last_error == "AwsThrottled"
            assert proxy.throttled >= 6, "botocore retries each call before giving up"
            assert (out / "api_key").read_text() == KEY_1, "the last good key stays in place"
            assert agent.ready
            proxy.throttling = False
            await eventually(lambda: held(out) == second, 60)
            assert agent.consecutive_failures == 0
        finally:
            agent.stop()
            await task
    assert "ThrottlingException" in caplog.text
    assert KEY_1 not in caplog.text
    assert KEY_2 not in caplog.text
    assert KEY_2 not in json.dumps(agent.status())


def test_throttled_call_is_retried_by_botocore_then_transient(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator")  # the default chain, as the operator's.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    name, _, _ = moto.create_secret(KEY_1)
    with ThrottlingProxy(moto.url) as proxy:
        proxy.throttling = True
        client = SecretsManagerSource(REGION, endpoint_url=proxy.url, max_attempts=4)
        with pytest.raises(AwsUnavailableError, match="throttling") as caught:
            client.metadata(AwsSecretRef(name, REGION))
    assert caught.value.reason == "AwsThrottled"
    assert proxy.throttled >= 4, "botocore retried the throttled call with backoff first"


def test_no_credentials_at_all_says_where_they_come_from(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = SecretsManagerSource(REGION, endpoint_url=moto.url)
    with pytest.raises(AwsNoCredentialsError, match="IRSA"):
        client.metadata(AwsSecretRef("captchaai/dev", REGION))


async def test_outage_keeps_the_last_good_key(tmp_path: Path) -> None:
    server = MotoServer()
    server.start()
    try:
        role = server.create_role([{"Action": AGENT_ACTIONS, "Resource": "*"}], TRUST)
        (tmp_path / "token").write_text("eyJ.token.sig")
        name, _, first = server.create_secret(KEY_1)
        identity = WebIdentity(role, token_file=tmp_path / "token")
        client = SecretsManagerSource(
            REGION, identity, endpoint_url=server.url, timeout=1, max_attempts=1
        )
        agent = KeyAgent(
            KeyRefresher(client, AwsSecretRef(name, REGION), KeyTarget(tmp_path)),
            refresh_interval=0.05,
            backoff=Backoff(base=0.05, cap=0.2),
        )
        await agent.refresh_once()
        assert held(tmp_path) == first
    finally:
        server.stop()
    with pytest.raises(AwsUnavailableError):
        await agent.refresh_once()
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.consecutive_failures >= 2, 60)
        assert agent.last_error == "AwsUnreachable"
        assert (tmp_path / "api_key").read_text() == KEY_1
        assert agent.ready
    finally:
        agent.stop()
        await task


async def test_key_rules_apply_to_an_aws_key(
    moto: MotoServer, web_identity: WebIdentity, tmp_path: Path
) -> None:
    """spec.key.format captchaai: a mistyped key in AWS is refused; the last good key stays."""
    name, _, first = moto.create_secret(KEY_1)
    client = SecretsManagerSource(REGION, web_identity, endpoint_url=moto.url)
    refresher = KeyRefresher(
        client, AwsSecretRef(name, REGION), KeyTarget(tmp_path), rules=KeyRules(format="captchaai")
    )
    assert await refresher.refresh()
    moto.put_value(name, "NOT-A-CAPTCHAAI-KEY")
    with pytest.raises(KeyRejectedError) as caught:
        await refresher.refresh()
    assert "NOT-A-CAPTCHAAI-KEY" not in str(caught.value)
    assert (tmp_path / "api_key").read_text() == KEY_1
    assert held(tmp_path) == first


async def test_without_describe_secret_the_agent_reads_the_value_each_time(
    moto_iam: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A role with GetSecretValue only (real IAM evaluation): refreshes still work."""
    name, _, first = moto_iam.create_secret(KEY_1)
    keys = moto_iam.create_user(
        f"reader-{first[:8]}", [{"Action": "secretsmanager:GetSecretValue", "Resource": "*"}]
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    client = SecretsManagerSource(REGION, endpoint_url=moto_iam.url)
    refresher = KeyRefresher(client, AwsSecretRef(name, REGION), KeyTarget(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert await refresher.refresh()
    assert held(tmp_path) == first
    assert "secretsmanager:DescribeSecret" in caplog.text
    second = moto_iam.put_value(name, KEY_2)
    assert await refresher.refresh()
    assert held(tmp_path) == second
